"""The `haproxy` part of a pair in the `lb` pillar: defaults, timeouts,
options, userlists, pools and their servers, listeners with their TLS
material, the stats page and the Prometheus exporter (lb_topology.py's
walk calls `HaproxyChecks.haproxy` for each pair).

Pure Python, no Salt dunders.
"""

import datetime
import re

import lb_grammar
from lb_check import BALANCE_RE, CHECK_TYPES, MODES, OPTION_RE, POOL_KINDS
from lb_check import pillar_path as _p

# TLS material in the pillar (listener `tls:`): PEM blocks as RFC 7468 writes them.
PEM_BLOCK_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)
PEM_KEY_TYPES = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")


# default-server / server keywords a pool may set (HAProxy 2.6, the ones that
# take one value).  Unknown keys are an error: a typo here would otherwise
# only show up as `haproxy -c` failing on the minion.
SERVER_PARAMS = {
    "inter": "time",
    "fastinter": "time",
    "downinter": "time",
    "rise": "int",
    "fall": "int",
    "slowstart": "time",
    "maxconn": "int",
    "maxqueue": "int",
    "minconn": "int",
    "weight": "weight",
    "on-marked-down": ("shutdown-sessions",),
    "on-marked-up": ("shutdown-backup-sessions",),
    "on-error": ("fastinter", "fail-check", "sudden-death", "mark-down"),
    "observe": ("layer4", "layer7"),
    "error-limit": "int",
    "agent-inter": "time",
    "init-addr": "word",
    "resolvers": "word",
}

# What a Galera pool gets unless the pillar says otherwise: the seed's timers,
# and sessions cut when a server changes state, so that a recovered active
# server does not take writes while old connections still write on a backup.
GALERA_DEFAULT_SERVER = {
    "inter": "2s",
    "downinter": "5s",
    "rise": 3,
    "fall": 2,
    "slowstart": "60s",
    "maxconn": 300,
    "maxqueue": 128,
    "weight": 100,
    "on-marked-down": "shutdown-sessions",
    "on-marked-up": "shutdown-backup-sessions",
    # Faster than fall x inter when the writer dies: after a first failed
    # check the next ones come every 500 ms, and three failed connections of
    # real traffic (observe layer4) mark it down at once.
    "fastinter": "500ms",
    "observe": "layer4",
    "error-limit": 3,
    "on-error": "mark-down",
}
GALERA_DEFAULT_CHECK = {"type": "tcp-check", "port": 9200, "expect": r"string is\ running."}

STATS_DEFAULTS = {
    "enabled": True,
    "interface": "mgmt",
    "port": 9000,
    "uri": "/haproxy_stats",
    "refresh": "10s",
    "show_node": True,
    "timeouts": {"client": "5s", "connect": "4s", "server": "30s"},
}

# HAProxy's Prometheus exporter (port: the one of HAProxy's documentation)
METRICS_DEFAULTS = {"port": 8405}


def cert_validity(cert) -> tuple[datetime.datetime, datetime.datetime]:
    """(not before, not after) of a `cryptography` certificate, as aware UTC
    datetimes.  cryptography >= 42 has the `*_utc` properties; older ones
    (Debian 12's python3-cryptography 38, what a salt-ssh target's python3
    imports: docs/agentless.md) only the naive UTC ones."""
    try:
        return cert.not_valid_before_utc, cert.not_valid_after_utc
    except AttributeError:
        return cert.not_valid_before.replace(tzinfo=datetime.UTC), cert.not_valid_after.replace(tzinfo=datetime.UTC)


class HaproxyChecks:
    """The haproxy section's checks, a part of lb_topology's checker."""

    def haproxy(self, raw, path, pair) -> dict:
        d = self.mapping(raw, path)
        out = {"global": {}, "defaults": {}, "userlists": {}, "stats": None, "metrics": None, "pools": {}, "listeners": {}}
        if d is None:
            return out
        self.unknown_keys(d, {"global", "defaults", "userlists", "stats", "metrics", "pools", "listeners"}, path)
        out["global"] = self.directives(d.get("global"), _p(path, "global"))
        out["defaults"] = self.defaults(d.get("defaults"), _p(path, "defaults"))
        out["userlists"] = self.userlists(d.get("userlists"), _p(path, "userlists"))
        out["pools"] = self.pools(d.get("pools"), _p(path, "pools"))
        out["listeners"] = self.listeners(d.get("listeners"), _p(path, "listeners"), pair, out["pools"], out["defaults"]["mode"])
        out["stats"] = self.stats(d.get("stats"), _p(path, "stats"), pair, out["userlists"])
        out["metrics"] = self.metrics(d.get("metrics"), _p(path, "metrics"), pair, out["stats"])
        return out

    def directives(self, raw, path) -> dict:
        """Extra `global` lines: keyword -> value (or list of values)."""
        out = {}
        d = self.mapping(raw, path, required=False) or {}
        managed = {"daemon", "master-worker", "stats", "user", "group", "chroot", "pidfile"}
        for key, value in d.items():
            kpath = _p(path, key)
            if not self.name(key, kpath, lb_grammar.HAPROXY_KEYWORD):
                continue
            if key in managed:
                self.err(kpath, f"{key!r} is managed by the product (master-worker, stats socket, user); it cannot be set here")
                continue
            values = value if isinstance(value, list) else [value]
            clean = []
            for i, v in enumerate(values):
                s = self.text(v, _p(kpath, i) if isinstance(value, list) else kpath, lb_grammar.HAPROXY_ARGS)
                if s is not None:
                    clean.append(s)
            out[key] = clean
        return out

    def defaults(self, raw, path) -> dict:
        out = {
            "mode": "tcp",
            "timeouts": {"connect": "5s", "client": "1m", "server": "1m", "queue": "30s", "check": "2s"},
            "options": ["dontlognull", "redispatch"],
            "retries": 3,
            "log": True,
        }
        d = self.mapping(raw, path, required=False)
        if d is None:
            return out
        self.unknown_keys(d, {"mode", "timeouts", "options", "retries", "log"}, path)
        if "mode" in d:
            if d["mode"] not in MODES:
                self.err(_p(path, "mode"), f"{d['mode']!r} is not one of {', '.join(MODES)}")
            else:
                out["mode"] = d["mode"]
        if "timeouts" in d:
            out["timeouts"] = dict(out["timeouts"], **self.timeouts(d["timeouts"], _p(path, "timeouts")))
        if "options" in d:
            out["options"] = self.options(d["options"], _p(path, "options"))
        if "retries" in d:
            out["retries"] = self.integer(d["retries"], _p(path, "retries"), 0, 100)
        if "log" in d:
            out["log"] = self.boolean(d["log"], _p(path, "log"))
        return out

    def timeouts(self, raw, path) -> dict:
        out = {}
        d = self.mapping(raw, path) or {}
        known = {
            "connect",
            "client",
            "server",
            "queue",
            "check",
            "tunnel",
            "http-request",
            "http-keep-alive",
            "client-fin",
            "server-fin",
            "tarpit",
        }
        for key, value in d.items():
            if key not in known:
                self.err(_p(path, key), f"unknown timeout (known: {', '.join(sorted(known))})")
                continue
            t = self.time(value, _p(path, key))
            if t is not None:
                out[key] = t
        return out

    def options(self, raw, path) -> list:
        if not isinstance(raw, list):
            self.err(path, "must be a list of option names (without the word `option`)")
            return []
        out = []
        for i, opt in enumerate(raw):
            if not self.name(opt, _p(path, i), OPTION_RE):
                continue
            if opt in ("tcp-check", "httpchk") or opt.startswith("httpchk "):
                self.err(_p(path, i), f"`option {opt}` comes from the pool's check; set it there")
                continue
            if opt in out:
                self.err(_p(path, i), f"option {opt!r} is listed twice")
                continue
            out.append(opt)
        return out

    def userlists(self, raw, path) -> dict:
        out = {}
        d = self.mapping(raw, path, required=False) or {}
        for name, ul in d.items():
            upath = _p(path, name)
            if not self.name(name, upath):
                continue
            ud = self.mapping(ul, upath)
            if ud is None:
                continue
            self.unknown_keys(ud, {"users", "groups"}, upath)
            users = {}
            for uname, user in (self.mapping(ud.get("users"), _p(upath, "users")) or {}).items():
                uupath = _p(upath, "users", uname)
                if not self.name(uname, uupath):
                    continue
                udict = self.mapping(user, uupath)
                if udict is None:
                    continue
                if "password" in udict or "insecure_password" in udict:
                    key = "password" if "password" in udict else "insecure_password"
                    self.err(
                        _p(uupath, key),
                        "plaintext passwords are refused (the seed's insecure-password): give password_hash, a SHA-crypt hash ($6$...) made with `mkpasswd -m sha-512`",
                    )
                    continue
                self.unknown_keys(udict, {"password_hash"}, uupath)
                h = udict.get("password_hash")
                problem = lb_grammar.password_hash_problem(h)
                if problem is not None:
                    # the reason names the rounds, never the hash itself
                    if lb_grammar.SHA_CRYPT.fullmatch(h) is None:
                        problem = f"is not {lb_grammar.SHA_CRYPT.what}"
                    self.err(_p(uupath, "password_hash"), problem)
                    continue
                users[uname] = {"name": uname, "password_hash": h}
            groups = {}
            for gname, members in (self.mapping(ud.get("groups"), _p(upath, "groups"), required=False) or {}).items():
                gpath = _p(upath, "groups", gname)
                if not self.name(gname, gpath):
                    continue
                if not isinstance(members, list):
                    self.err(gpath, "must be a list of user names")
                    continue
                ok = []
                for i, m in enumerate(members):
                    if m not in users:
                        self.err(_p(gpath, i), f"names unknown user {m!r} (users: {', '.join(sorted(users))})")
                    else:
                        ok.append(m)
                groups[gname] = ok
            out[name] = {"name": name, "users": users, "groups": groups}
        return out

    def check_spec(self, raw, path, kind) -> dict:
        if raw is None:
            return dict(GALERA_DEFAULT_CHECK) if kind == "galera" else {"type": "connect", "port": None}
        d = self.mapping(raw, path) or {}
        self.unknown_keys(d, {"type", "port", "expect", "uri", "method", "status"}, path)
        ctype = d.get("type", "connect")
        out = {"type": ctype, "port": None}
        if ctype not in CHECK_TYPES:
            self.err(_p(path, "type"), f"{ctype!r} is not one of {', '.join(CHECK_TYPES)}")
            return out
        if "port" in d:
            out["port"] = self.integer(d["port"], _p(path, "port"), 1, 65535, " (a TCP port)")
        if ctype == "tcp-check":
            out["expect"] = self.text(d.get("expect"), _p(path, "expect"), lb_grammar.HAPROXY_TCP_EXPECT)
        elif ctype == "httpchk":
            out["method"] = d.get("method", "GET")
            if out["method"] not in ("GET", "HEAD", "OPTIONS"):
                self.err(_p(path, "method"), f"{out['method']!r} is not GET, HEAD or OPTIONS")
            out["uri"] = self.text(d.get("uri", "/"), _p(path, "uri"), lb_grammar.HAPROXY_URI)
            out["status"] = self.integer(d.get("status", 200), _p(path, "status"), 100, 599)
        elif "expect" in d:
            self.err(_p(path, "expect"), f"only a tcp-check has an expect rule, this check is {ctype!r}")
        return out

    def server_params(self, raw, path) -> dict:
        out = {}
        d = self.mapping(raw, path, required=False) or {}
        for key, value in d.items():
            kpath = _p(path, key)
            spec = SERVER_PARAMS.get(key)
            if spec is None:
                if key == "port":
                    self.err(kpath, "the check port is set once, in the pool's check:port")
                else:
                    self.err(kpath, f"unknown server parameter (known: {', '.join(sorted(SERVER_PARAMS))})")
                continue
            if spec == "time":
                v = self.time(value, kpath)
            elif spec == "int":
                v = self.integer(value, kpath, 0, 1_000_000)
            elif spec == "weight":
                v = self.integer(value, kpath, 0, 256)
            elif spec == "word":
                v = self.text(value, kpath, lb_grammar.HAPROXY_SERVER_WORD)
            else:
                v = value if value in spec else None
                if v is None:
                    self.err(kpath, f"{value!r} is not one of {', '.join(spec)}")
            if v is not None:
                out[key] = v
        return out

    def pools(self, raw, path) -> dict:
        out = {}
        d = self.mapping(raw, path) or {}
        for name, pool in d.items():
            ppath = _p(path, name)
            if not self.name(name, ppath):
                continue
            pd = self.mapping(pool, ppath)
            if pd is None:
                continue
            self.unknown_keys(pd, {"kind", "check", "default_server", "servers"}, ppath)
            kind = pd.get("kind", "tcp")
            if kind not in POOL_KINDS:
                self.err(_p(ppath, "kind"), f"{kind!r} is not one of {', '.join(POOL_KINDS)}")
                continue
            entry = {"name": name, "kind": kind}
            entry["check"] = self.check_spec(pd.get("check"), _p(ppath, "check"), kind)
            params = self.server_params(pd.get("default_server"), _p(ppath, "default_server"))
            if kind == "galera":
                params = dict(GALERA_DEFAULT_SERVER, **params)
            entry["default_server"] = params
            servers = {}
            seen_addr = {}
            sd = self.mapping(pd.get("servers"), _p(ppath, "servers")) or {}
            if not sd and pd.get("servers") is not None:
                self.err(_p(ppath, "servers"), "holds no server")
            for sname, server in sd.items():
                spath = _p(ppath, "servers", sname)
                if not self.name(sname, spath):
                    continue
                sdict = self.mapping(server, spath)
                if sdict is None:
                    continue
                self.unknown_keys(sdict, {"address", "port", "backup", "check", "weight", "disabled"}, spath)
                addr = self.ip(sdict.get("address"), _p(spath, "address"))
                port = self.integer(sdict.get("port"), _p(spath, "port"), 1, 65535, " (a TCP port)")
                backup = self.boolean(sdict.get("backup", False), _p(spath, "backup"))
                chk = self.boolean(sdict.get("check", entry["check"]["type"] != "none"), _p(spath, "check"))
                disabled = self.boolean(sdict.get("disabled", False), _p(spath, "disabled"))
                weight = None
                if "weight" in sdict:
                    weight = self.integer(sdict["weight"], _p(spath, "weight"), 0, 256)
                if addr is not None and port is not None:
                    if (addr, port) in seen_addr:
                        self.err(spath, f"{addr}:{port} is also server {seen_addr[(addr, port)]!r} of this pool")
                    seen_addr[(addr, port)] = sname
                if None in (addr, port, backup, chk, disabled):
                    continue
                servers[sname] = {
                    "name": sname,
                    "address": addr,
                    "port": port,
                    "backup": backup,
                    "check": chk,
                    "weight": weight,
                    "disabled": disabled,
                }
            entry["servers"] = servers
            if kind == "galera" and servers:
                active = [s for s in servers.values() if not s["backup"]]
                if len(active) != 1:
                    self.err(
                        _p(ppath, "servers"),
                        f"a galera pool takes writes on exactly one server, the others are `backup: true`; this one has {len(active)} active ({', '.join(s['name'] for s in active) or 'none'})",
                    )
                if entry["check"]["type"] in ("connect", "none"):
                    self.err(
                        _p(ppath, "check", "type"),
                        "a galera pool needs the probe (tcp-check or httpchk on the probe port): a TCP connect succeeds on a desynced node",
                    )
            out[name] = entry
        return out

    def listeners(self, raw, path, pair, pools, default_mode) -> dict:
        out = {}
        d = self.mapping(raw, path) or {}
        groups = pair["carp"]["groups"]
        binds = {}
        section_names = {}
        for name, lst in d.items():
            lpath = _p(path, name)
            if not self.name(name, lpath):
                continue
            ld = self.mapping(lst, lpath)
            if ld is None:
                continue
            self.unknown_keys(ld, {"name", "vhid", "port", "mode", "balance", "timeouts", "options", "pool", "maxconn", "tls"}, lpath)
            entry = {"key": name}
            vhid = self.integer(ld.get("vhid"), _p(lpath, "vhid"), 1, 255, " (the CARP group whose VIP it binds)")
            if vhid is not None and vhid not in groups:
                if vhid not in self.broken_vhids.get(pair["name"], ()):
                    self.err(
                        _p(lpath, "vhid"),
                        f"no CARP group {vhid} carries a VIP for this listener (groups: {', '.join(str(v) for v in sorted(groups)) or 'none'})",
                    )
                vhid = None
            port = self.integer(ld.get("port"), _p(lpath, "port"), 1, 65535, " (a TCP port)")
            mode = ld.get("mode", default_mode)
            if mode not in MODES:
                self.err(_p(lpath, "mode"), f"{mode!r} is not one of {', '.join(MODES)}")
                mode = None
            balance = ld.get("balance", "roundrobin")
            if not self.name(balance, _p(lpath, "balance"), BALANCE_RE):
                balance = None
            timeouts = self.timeouts(ld.get("timeouts") or {}, _p(lpath, "timeouts"))
            options = self.options(ld.get("options", []), _p(lpath, "options"))
            maxconn = None
            if "maxconn" in ld:
                maxconn = self.integer(ld["maxconn"], _p(lpath, "maxconn"), 1, 10_000_000)
            pool_name = ld.get("pool")
            pool = pools.get(pool_name) if isinstance(pool_name, str) else None
            if pool is None:
                self.err(_p(lpath, "pool"), f"names no pool ({pool_name!r}; pools: {', '.join(sorted(pools)) or 'none'})")
            if vhid is not None and port is not None:
                key = (groups[vhid]["vip"].ip, port)
                if key in binds:
                    self.err(_p(lpath, "port"), f"{key[0]}:{port} is already bound by listener {binds[key]!r}")
                binds[key] = name
            if "allbackups" in options and pool is not None and pool["kind"] == "galera":
                self.warn(
                    _p(lpath, "options"),
                    "option allbackups on a galera pool sends writes to every backup at once when the active server fails: the deadlocks one-active-plus-backups exists to avoid",
                )
            if (
                pool is not None
                and pool["kind"] == "galera"
                and balance not in (None, "leastconn", "first", "roundrobin", "static-rr", "source")
            ):
                self.warn(
                    _p(lpath, "balance"),
                    f"balance {balance} on a galera pool: with one active server the algorithm only matters among backups",
                )
            if pool is not None and mode == "tcp" and pool["kind"] == "http":
                self.warn(_p(lpath, "mode"), "an http pool behind a tcp listener: no HTTP logging or header handling")
            tls = None
            if ld.get("tls") is not None:
                tls = self.tls(ld["tls"], _p(lpath, "tls"), mode, port)
                if tls is not None and tls["redirect_http"] and vhid is not None:
                    key = (groups[vhid]["vip"].ip, 80)
                    if key in binds:
                        self.err(_p(lpath, "tls", "redirect_http"), f"{key[0]}:80 is already bound by listener {binds[key]!r}")
                    binds[key] = f"{name} (redirect_http)"
            if None in (vhid, port, mode, balance) or pool is None or (ld.get("tls") is not None and tls is None):
                continue
            vip = groups[vhid]["vip"].ip
            section = ld.get("name") or f"haproxy_{vip}_{port}"
            if not self.name(section, _p(lpath, "name")):
                continue
            if section in section_names:
                self.err(_p(lpath, "name"), f"section name {section!r} is also listener {section_names[section]!r}")
                continue
            section_names[section] = name
            entry.update(
                {
                    "name": section,
                    "vhid": vhid,
                    "vip": vip,
                    "port": port,
                    "mode": mode,
                    "balance": balance,
                    "timeouts": timeouts,
                    "options": options,
                    "pool": pool_name,
                    "maxconn": maxconn,
                    "tls": tls,
                }
            )
            out[name] = entry
        return out

    def pem_blocks(self, value, path, what) -> list[tuple[str, bytes]] | None:
        """The PEM blocks of a pillar string as (label, DER bytes), or None
        after an error at `path`."""
        import base64
        import binascii

        if not isinstance(value, str) or "-----BEGIN " not in value:
            self.err(
                path,
                f"must be {what} in PEM form (-----BEGIN ...-----), got {type(value).__name__ if not isinstance(value, str) else 'text without a PEM block'}",
            )
            return None
        blocks = []
        for m in PEM_BLOCK_RE.finditer(value):
            body = m.group(2)
            if "Proc-Type: 4,ENCRYPTED" in body:
                blocks.append((m.group(1) + " (ENCRYPTED)", b""))
                continue
            try:
                der = base64.b64decode("".join(body.split()), validate=True)
            except (binascii.Error, ValueError):
                self.err(path, f"the {m.group(1)} block is not valid base64")
                return None
            if not der or der[0] != 0x30:
                self.err(path, f"the {m.group(1)} block does not hold DER data")
                return None
            blocks.append((m.group(1), der))
        if not blocks:
            self.err(path, f"has a BEGIN line but no complete PEM block (is an END line missing?); must be {what}")
            return None
        return blocks

    def tls(self, raw, path, mode, port) -> dict | None:
        """A listener's `tls`: certificate (chain) and key from the pillar,
        deployed 0600 as one PEM that HAProxy's `bind ... ssl crt` reads."""
        d = self.mapping(raw, path)
        if d is None:
            return None
        self.unknown_keys(d, {"certificate", "key", "redirect_http"}, path)
        errors = len(self.errors)
        if mode is not None and mode != "http":
            self.err(path, f"TLS is terminated on HTTP listeners; this one has mode {mode}")
        redirect = d.get("redirect_http", False)
        if not isinstance(redirect, bool):
            self.err(_p(path, "redirect_http"), f"must be true or false, got {redirect!r}")
        elif redirect and port == 80:
            self.err(
                _p(path, "redirect_http"),
                "the listener itself is on port 80; redirect_http adds a plain-HTTP bind on port 80 that redirects to it",
            )
        certs = self.pem_blocks(d.get("certificate"), _p(path, "certificate"), "the certificate (and its chain)")
        if certs is not None:
            labels = [b[0] for b in certs]
            if any("PRIVATE KEY" in label for label in labels):
                self.err(_p(path, "certificate"), "holds a private key; give it under tls:key")
            elif labels[0] != "CERTIFICATE" or any(label not in ("CERTIFICATE", "TRUSTED CERTIFICATE") for label in labels):
                self.err(_p(path, "certificate"), f"must hold CERTIFICATE blocks only, found {', '.join(labels)}")
        keys = self.pem_blocks(d.get("key"), _p(path, "key"), "the private key")
        if keys is not None:
            labels = [b[0] for b in keys]
            if len(keys) != 1:
                self.err(_p(path, "key"), f"must hold exactly one private key block, found {', '.join(labels)}")
            elif "ENCRYPTED" in labels[0]:
                self.err(
                    _p(path, "key"),
                    "is encrypted; HAProxy cannot ask for a passphrase at start: give the key unencrypted (the pillar is where it is protected)",
                )
            elif labels[0] not in PEM_KEY_TYPES:
                self.err(_p(path, "key"), f"must be a private key block ({', '.join(PEM_KEY_TYPES)}), found {labels[0]}")
        if len(self.errors) == errors:
            self.tls_pair(certs[0][1], keys[0][1], path)
        if len(self.errors) != errors:
            return None
        return {"certificate": d["certificate"], "key": d["key"], "redirect_http": redirect}

    def tls_pair(self, cert_der: bytes, key_der: bytes, path) -> None:
        """With `cryptography` at hand (Salt depends on it): the key must be
        the certificate's, and an expired certificate is a warning."""
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import serialization
        except ImportError:  # pragma: no cover - Salt always brings it
            return
        try:
            cert = x509.load_der_x509_certificate(cert_der)
        except ValueError as exc:
            self.err(_p(path, "certificate"), f"is not a readable X.509 certificate ({exc})")
            return
        try:
            key = serialization.load_der_private_key(key_der, password=None)
        except (ValueError, TypeError) as exc:
            self.err(_p(path, "key"), f"is not a readable private key ({exc})")
            return
        fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if key.public_key().public_bytes(*fmt) != cert.public_key().public_bytes(*fmt):
            self.err(
                _p(path, "key"), f"does not belong to the certificate ({cert.subject.rfc4514_string()}): HAProxy would refuse the pair"
            )
            return
        _, not_after = cert_validity(cert)
        if not_after < datetime.datetime.now(datetime.UTC):
            self.warn(_p(path, "certificate"), f"expired on {not_after:%Y-%m-%d} ({cert.subject.rfc4514_string()})")

    def stats(self, raw, path, pair, userlists) -> dict | None:
        d = self.mapping(raw, path, required=False)
        if d is None:
            self.warn(path, "no stats listener: operators have no status page")
            return None
        allowed = {"enabled", "interface", "port", "uri", "userlist", "admin_group", "refresh", "show_node", "timeouts"}
        self.unknown_keys(d, allowed, path)
        out = dict(STATS_DEFAULTS, timeouts=dict(STATS_DEFAULTS["timeouts"]))
        if "enabled" in d:
            out["enabled"] = self.boolean(d["enabled"], _p(path, "enabled"))
        if not out["enabled"]:
            return None
        ifname = d.get("interface", out["interface"])
        for node_id, node in pair["nodes"].items():
            if ifname not in node["interfaces"]:
                self.err(_p(path, "interface"), f"node {node_id} has no interface {ifname!r} to bind the stats page to")
        out["interface"] = ifname
        if "port" in d:
            out["port"] = self.integer(d["port"], _p(path, "port"), 1, 65535, " (a TCP port)")
        out["uri"] = self.text(d.get("uri", out["uri"]), _p(path, "uri"), lb_grammar.HAPROXY_URI)
        if "refresh" in d:
            out["refresh"] = self.time(d["refresh"], _p(path, "refresh"))
        if "show_node" in d:
            out["show_node"] = self.boolean(d["show_node"], _p(path, "show_node"))
        if "timeouts" in d:
            out["timeouts"].update(self.timeouts(d["timeouts"], _p(path, "timeouts")))
        ul = d.get("userlist")
        if ul is None:
            self.err(_p(path, "userlist"), "is required: the stats page is never open without authentication")
        elif ul not in userlists:
            self.err(_p(path, "userlist"), f"names no userlist ({ul!r}; userlists: {', '.join(sorted(userlists)) or 'none'})")
        out["userlist"] = ul
        ag = d.get("admin_group")
        if ag is not None and ul in userlists and ag not in userlists[ul]["groups"]:
            self.err(_p(path, "admin_group"), f"names no group of userlist {ul!r} ({ag!r})")
        out["admin_group"] = ag
        return out

    def metrics(self, raw, path, pair, stats) -> dict | None:
        """HAProxy's Prometheus exporter: on the stats address (the
        management network), open only to `allow` (default: the stats
        interface's network)."""
        d = {} if raw is None else self.mapping(raw, path)
        if d is None:
            return None
        self.unknown_keys(d, {"enabled", "port", "allow"}, path)
        enabled = self.boolean(d["enabled"], _p(path, "enabled")) if "enabled" in d else True
        if not enabled or stats is None:
            if enabled and d:
                self.err(path, "the exporter binds the stats page's address: it needs haproxy:stats (or set enabled: false)")
            return None
        out = {"port": METRICS_DEFAULTS["port"], "allow": []}
        if "port" in d:
            out["port"] = self.integer(d["port"], _p(path, "port"), 1, 65535, " (a TCP port)")
            if out["port"] is not None and out["port"] == stats["port"]:
                self.err(_p(path, "port"), f"{out['port']} is the stats page's port")
        allow = d.get("allow")
        if allow is None:
            # the network of the interface the exporter binds (the same on both nodes)
            ifname = stats["interface"]
            nets = {str(n["interfaces"][ifname]["cidr"].cidr) for n in pair["nodes"].values() if ifname in n["interfaces"]}
            out["allow"] = sorted(nets)
        elif not isinstance(allow, list) or not allow:
            self.err(
                _p(path, "allow"), "must be a non-empty list of networks (like [10.1.1.0/24]); set enabled: false to turn the exporter off"
            )
        else:
            for i, item in enumerate(allow):
                ipath = _p(path, "allow", i)
                if not isinstance(item, str) or not re.fullmatch(r"[0-9.]{7,15}/[0-9]{1,2}", item):
                    self.err(ipath, f"{item!r} is not an IPv4 network with a prefix (like 10.1.1.0/24, or 10.1.1.7/32 for one host)")
                    continue
                net = self.cidr(item, ipath)
                if net is not None and str(net) not in out["allow"]:
                    out["allow"].append(str(net))
        return out
