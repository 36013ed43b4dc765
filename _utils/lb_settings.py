"""The per-minion settings, checked before anything reads them.

Pure Python.  Four config keys (minion config, grains or pillar) move this
product's paths and binaries on one minion, and every one of their values
ends up in a root shell or a config file: ``lb_carp`` (the CARP providers'
directories and binaries: the event hook, the FreeBSD rc.d script,
keepalived's notify command), ``haproxy_cfg`` (HAProxy's paths, binary and
owner), ``clustercheck`` (the Galera probe's paths, interpreter, xinetd
``bind``), ``lb_haproxy`` (the haproxy SLS's parameters) and ``lb_routing``
(the routing daemons' paths).

``validate(key, mapping)`` returns the mapping when every value is what its
target reads back unchanged (lb_grammar's rules: absolute paths of
``[A-Za-z0-9_./+-]``, user names, package names, addresses) and no key is
unknown; otherwise it raises ``SettingsError`` naming each settings path
(``lb_carp:state_dir: ...``).  ``findings(data)`` checks every such key a
pillar (or minion config) holds, for the pillar gate.
"""

from __future__ import annotations

from typing import Any

import lb_grammar
import lb_parameters

KEYS = ("lb_carp", "haproxy_cfg", "clustercheck", "lb_haproxy", "lb_routing")

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
    "lb_carp": {
        **{k: _PATH for k in sorted(lb_parameters.keys("carp"))},
        "keepalived_bin": _PATH,
        "ucarp_bin": _PATH,
        "provider": _choice("keepalived", "ucarp"),
    },
    # haproxy_cfg.settings()
    "haproxy_cfg": {
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
    # lb_parameters' haproxy section (the haproxy SLS's own)
    "lb_haproxy": {
        "pkg": lb_grammar.PACKAGE_NAME,
        "unmanaged": _choice("remove", "keep"),
        "init_defaults": _PATH_OR_FALSE,
    },
    # lb_parameters' routing section (both families) and routing.paths()'s pidfile
    # (not hook_conf: always beside the hook)
    "lb_routing": {k: _PATH for k in sorted({*lb_parameters.keys("routing"), "pidfile"} - {"hook_conf"})},
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


def check(key: str, mapping) -> list[tuple[str, str]]:
    """Every problem of the settings mapping ``mapping`` under config key
    ``key``, as (settings path, message); [] when it is fine (None, an empty
    mapping, is fine: the defaults apply)."""
    if key not in SCHEMAS:
        raise KeyError(f"no settings key {key!r} (known: {', '.join(KEYS)})")
    if mapping is None:
        return []
    if not isinstance(mapping, dict):
        return [(key, f"must be a mapping, got {type(mapping).__name__}")]
    schema = SCHEMAS[key]
    out = []
    for name, value in mapping.items():
        path = f"{key}:{name}"
        if name not in schema:
            out.append((path, f"unknown setting (known: {', '.join(sorted(schema))})"))
            continue
        if value is None and key in _NULLABLE:
            continue
        problem = _value_problem(schema[name], value)
        if problem is not None:
            out.append((path, problem))
    return out


def validate(key: str, mapping) -> dict:
    """``mapping`` (a copy; {} for None) when ``check`` finds nothing, else
    SettingsError with every problem and its settings path."""
    errors = check(key, mapping)
    if errors:
        raise SettingsError(errors)
    return dict(mapping or {})


def lookup(key: str, *sources) -> dict:
    """The one way every module reads a settings key: the mapping under
    `key` in the first of `sources` that has one (the minion's config,
    grains and pillar, in that order: one place for a node's settings wins
    whole, as Salt's config.get does), checked by `validate` (SettingsError
    naming `<key>:<setting>`); {} when none has it."""
    for source in sources:
        value = source.get(key) if hasattr(source, "get") else None
        if value is not None:
            return validate(key, value)
    return {}


def findings(data) -> list[tuple[str, str]]:
    """Every problem of every settings key in ``data`` (a compiled pillar, a
    minion config or grains): what the pillar gate refuses."""
    if not isinstance(data, dict):
        return []
    out = []
    for key in KEYS:
        if key in data:
            out += check(key, data[key])
    return out
