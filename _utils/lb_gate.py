"""The pillar gate's logic: what a change to the `lb` pillar means.

Pure Python, no Salt (the Salt side is `tools/pillar_gate.py`: it renders
the pillar repository's SLS through Salt's own renderers and runs
`haproxy -c` through the haproxy_cfg module).

- `haproxy_findings`: HAProxy's `haproxy -c` messages on a rendered config,
  each at the pillar path that produced the line HAProxy names
  (`lb:pairs:edge:haproxy:pools:web_a:servers:http_srv-9`).
- `affected`: which minions a change of topology touches, and with which
  states (the post-receive hook applies exactly those).
- what a pushed pillar may not do before anything of it is rendered
  (`renderer_findings`, `template_findings`), which top-file targets need a
  minion's grains (`grain_targets`), and which branches the master serves
  (`served_branches`).
"""

from __future__ import annotations

import re

import jinja2
import jinja2.meta
import jinja2.nodes

import haproxy_config
import lb_probe
import lb_render
from lb_topology import ROOT, Finding

# HAProxy names the line: "parsing [/path/haproxy.cfg:42] : ..."
_LINE_RE = re.compile(r"\[[^\]\s]*?:(\d+)\]")
# ... or the proxy (and server): "proxy 'haproxy_198.18.2.5_80', server 'http_srv-1': ..."
_PROXY_RE = re.compile(r"proxy '([^']+)'(?:, server '([^']+)')?")

# The SLS a change applies, in this order.  Which SLS writes which file is
# lb_render.writer (the preview's `state`), the same table the states and
# the preview contract test use.
LB_STATE_ORDER = ("host", "carp", "haproxy", "routing")


def _p(*parts) -> str:
    return ":".join(str(p) for p in parts)


def section_paths(pair: dict, text: str) -> dict[int, str]:
    """{line number (1-based): pillar path} for every line of a rendered
    haproxy.cfg of `pair`."""
    base = _p(ROOT, "pairs", pair["name"], "haproxy")
    hp = pair["haproxy"]
    by_name = {lst["name"]: key for key, lst in hp["listeners"].items()}
    users_by_name = {ul["name"]: key for key, ul in hp["userlists"].items()}
    out = {}
    here = base
    pool = None
    for n, line in enumerate(text.splitlines(), start=1):
        header = haproxy_config.header_of(line)
        if header:
            kind, name = header
            pool = None
            if kind in ("global", "defaults"):
                here = _p(base, kind)
            elif kind == "userlist" and name in users_by_name:
                here = _p(base, "userlists", users_by_name[name])
            elif kind == "listen" and name in by_name:
                here = _p(base, "listeners", by_name[name])
                pool = hp["listeners"][by_name[name]]["pool"]
            elif (kind, name) in (("listen", "stats"), ("frontend", "prometheus")):
                here = _p(base, "stats")
            else:
                here = base
            out[n] = here
            continue
        words = haproxy_config.words(line)
        if pool and words[:1] == ["server"] and len(words) > 1:
            out[n] = _p(base, "pools", pool, "servers", words[1])
        elif pool and words[:1] == ["default-server"]:
            out[n] = _p(base, "pools", pool, "default_server")
        elif pool and (words[:1] in (["tcp-check"], ["http-check"]) or words[:2] in (["option", "tcp-check"], ["option", "httpchk"])):
            out[n] = _p(base, "pools", pool, "check")
        elif words[:1] == ["user"] and len(words) > 1 and here.startswith(_p(base, "userlists")):
            out[n] = _p(here, "users", words[1])
        else:
            out[n] = here
    return out


def proxy_path(pair: dict, proxy: str, server: str | None = None) -> str | None:
    """The pillar path of a rendered proxy (and one of its servers)."""
    hp = pair["haproxy"]
    base = _p(ROOT, "pairs", pair["name"], "haproxy")
    for key, lst in hp["listeners"].items():
        if lst["name"] == proxy:
            if server and server in hp["pools"][lst["pool"]]["servers"]:
                return _p(base, "pools", lst["pool"], "servers", server)
            return _p(base, "listeners", key)
    if proxy in ("stats", "prometheus"):
        return _p(base, "stats")
    return None


def haproxy_findings(pair: dict, node_id: str, os_family: str, text: str, message: str) -> list[Finding]:
    """`haproxy -c`'s ALERT lines about the node's rendered config `text`,
    each as a Finding at the pillar path of the line, or the proxy and
    server, it names (the pair's `haproxy` key when it names none).  The
    closing "Fatal errors found" line only when it is the only one."""
    paths = section_paths(pair, text)
    base = _p(ROOT, "pairs", pair["name"], "haproxy")
    found = []
    alerts = [line for line in message.splitlines() if "[ALERT]" in line]
    if len(alerts) > 1:
        alerts = [line for line in alerts if "Fatal errors found" not in line]
    for line in alerts:
        m = _LINE_RE.search(line)
        path = paths.get(int(m.group(1)), base) if m else base
        if not m:
            pm = _PROXY_RE.search(line)
            if pm:
                path = proxy_path(pair, pm.group(1), pm.group(2)) or base
        what = line.split("]", 1)[1].strip() if "]" in line else line
        what = re.sub(r"^\(\d+\)\s*:\s*", "", what)
        found.append(Finding(path, f"haproxy -c rejects {node_id}'s config ({os_family}): {what}"))
    return found


# ---------------------------------------------------------------------------
# what a change touches


def _lb_files(model: dict, pair: dict, node_id: str, os_family: str) -> dict[str, str]:
    return {path: f.content for path, f in lb_render.render_node(model, node_id, os_family).items()}


def _state_of(path: str, os_family: str) -> str | None:
    return lb_render.writer(path, os_family)


def _all_states(pair: dict) -> list[str]:
    """Every SLS a node of `pair` gets (salt/top.sls): routing only with
    OSPF or BGP in the pair."""
    routing = pair.get("routing") or {}
    return [s for s in LB_STATE_ORDER if s != "routing" or routing.get("bgp") is not None or routing.get("ospf") is not None]


def affected(old_model: dict | None, new_model: dict, os_family: str = "Debian") -> dict:
    """What a change from `old_model` to `new_model` touches:

        {"lb": {node id: [states]}, "galera": {pair name: [server addresses]},
         "unassigned": {node id: [paths no state writes]}}

    A load balancer is affected when a file it gets changes (compared by
    rendered content, secrets included); each such file maps to the state
    that writes it.  A pair's database servers are affected when the probe's
    files change; their addresses (old and new) are given, since the
    minions running the probe are found by address (`lb.roles`).  A node
    that is new, or gone, gets every LB state."""
    out = {"lb": {}, "galera": {}, "unassigned": {}}
    old_pairs = (old_model or {}).get("pairs", {})
    for name, pair in new_model["pairs"].items():
        old_pair = old_pairs.get(name)
        for node_id in pair["nodes"]:
            new_files = _lb_files(new_model, pair, node_id, os_family)
            if old_pair is None or node_id not in old_pair["nodes"]:
                out["lb"][node_id] = _all_states(pair)
                continue
            old_files = _lb_files(old_model, old_pair, node_id, os_family)
            changed = sorted(p for p in set(new_files) | set(old_files) if new_files.get(p) != old_files.get(p))
            states = {_state_of(p, os_family) for p in changed}
            unassigned = [p for p in changed if _state_of(p, os_family) is None]
            if unassigned:
                out["unassigned"][node_id] = unassigned
            states.discard(None)
            if states:
                out["lb"][node_id] = [s for s in LB_STATE_ORDER if s in states]
        if pair.get("galera_probe"):
            new_probe = {p: (f.content, f.context) for p, f in lb_probe.render_probe(new_model, name, os_family).items()}
            old_probe = None
            if old_pair is not None and old_pair.get("galera_probe"):
                old_probe = {p: (f.content, f.context) for p, f in lb_probe.render_probe(old_model, name, os_family).items()}
            if new_probe != old_probe:
                addrs = {str(s["address"]) for s in lb_probe.galera_servers(pair)}
                if old_pair is not None:
                    addrs |= {str(s["address"]) for s in lb_probe.galera_servers(old_pair)}
                out["galera"][name] = sorted(addrs)
    for name, old_pair in old_pairs.items():
        for node_id in old_pair["nodes"]:
            if name not in new_model["pairs"] or node_id not in new_model["pairs"][name]["nodes"]:
                out["lb"].setdefault(node_id, _all_states(old_pair))
    return out


def primaries_last(model: dict, nodes) -> list[str]:
    """`nodes` ordered so that a node that is primary for a CARP group comes
    after its peer: the BACKUP changes first, the node serving the VIPs last."""

    def primary_count(node_id):
        return sum(1 for pair in model["pairs"].values() for g in pair["carp"]["groups"].values() if g["primary"] == node_id)

    return sorted(nodes, key=lambda n: (primary_count(n), n))


# ---------------------------------------------------------------------------
# what a pushed pillar may not do

# The renderers a pushed pillar may name: text in, data out, no code of the
# push runs.  `gpg` only last (it decrypts the data the others produced; the
# gate decrypts outside the render, pillar_gate.py).  py, pyobjects, pydsl,
# mako, wempy, cheetah, genshi ... run code from the file: refused.
SAFE_RENDERERS = ("jinja", "yaml", "json", "gpg")
# Salt's old combined names (salt/template.py OLD_STYLE_RENDERERS)
_OLD_STYLE = {
    f"{fmt}_{tmpl}": f"{tmpl}|{fmt}"
    for fmt, tmpl in (("yaml", "jinja"), ("yaml", "mako"), ("yaml", "wempy"), ("json", "jinja"), ("json", "mako"), ("json", "wempy"))
}
_OLD_STYLE["yamlex_jinja"] = "jinja|yamlex"

# Names a pushed template may not use: Salt's execution functions, the
# master's options, the whole context (which holds both).
REFUSED_NAMES = {
    "salt": "calls Salt's execution functions (salt[...])",
    "__salt__": "calls Salt's execution functions (__salt__)",
    "opts": "reads the master's options (opts)",
    "__opts__": "reads the master's options (__opts__)",
    "show_full_context": "reads the whole render context (show_full_context), which holds salt and opts",
}
# Salt's Jinja filters that reach the network, the master's files or any
# method of an object.
REFUSED_FILTERS = {
    "http_query": "makes an HTTP request",
    "dns_check": "makes a DNS query",
    "list_files": "lists the master's files",
    "is_empty": "reads the master's files",
    "is_bin_file": "reads the master's files",
    "is_text_file": "reads the master's files",
    "file_hashsum": "reads the master's files",
    "which": "searches the master's PATH",
    "get_uid": "looks up the master's users",
    "method_call": "calls any method of an object",
}
GRAIN_NAMES = ("grains", "__grains__")


def render_pipe(first_line: str, default: str) -> list[str]:
    """The renderers Salt runs on an SLS file whose first line is
    `first_line` (salt/template.py: a `#!` line that is not a path names
    the pipe, else the master's `renderer` option)."""
    line = first_line.strip()
    pipe = line[2:] if line.startswith("#!") and not line.startswith("#!/") else default
    pipe = _OLD_STYLE.get(pipe.strip(), pipe)
    return [(part.strip() + " ").split(" ", 1)[0] for part in pipe.split("|")]


def renderer_findings(relpath: str, first_line: str, default: str) -> list[Finding]:
    """A pushed SLS file that names a renderer other than SAFE_RENDERERS
    (or `gpg` anywhere but last): one Finding at the file's path."""
    pipe = render_pipe(first_line, default)
    shebang = first_line.strip().startswith("#!") and not first_line.startswith("#!/")
    where = "its first line" if shebang else "the master's `renderer` option"
    bad = [r for r in pipe if r not in SAFE_RENDERERS]
    if bad:
        return [
            Finding(
                relpath,
                f"renders with {', '.join(repr(r) for r in bad)} ({where}: {'|'.join(pipe)}), a renderer that can run code on the master;"
                f" a pushed pillar may use only {'|'.join(SAFE_RENDERERS)}",
            )
        ]
    if "gpg" in pipe[:-1]:
        return [Finding(relpath, f"renders with gpg before {'|'.join(pipe[pipe.index('gpg') + 1 :])} ({where}); gpg may only come last")]
    return []


def _under(name: str) -> bool:
    return isinstance(name, str) and name.startswith("_")


def template_findings(relpath: str, text: str, env: jinja2.Environment) -> tuple[list[Finding], bool]:
    """What a pushed Jinja template may not do, found in its source without
    rendering it: names in REFUSED_NAMES, filters in REFUSED_FILTERS,
    attributes or keys that start with `_`, a `#jinja2:` header (it would
    change the syntax this check reads).  Each Finding at `relpath:line`.
    Returns (findings, whether the template reads grains).  A text that is
    not Jinja gives nothing (rendering it fails, and says so)."""
    lines = text.splitlines()
    head = lines[1:2] if lines[:1] and lines[0].startswith("#!") and not lines[0].startswith("#!/") else lines[:1]
    if head and head[0].startswith("#jinja2:") and head[0][len("#jinja2:") :].strip():
        return [Finding(relpath, "has a `#jinja2:` header: a pushed pillar may not change Jinja's syntax")], False
    try:
        ast = env.parse(text)
    except jinja2.TemplateError:
        return [], False
    found = []

    def at(node, what):
        found.append(Finding(f"{relpath}:{getattr(node, 'lineno', '?')}", what))

    # the code generator behind find_undeclared_variables wants every filter
    # and test to exist: Salt's own (json, yaml, ...) stand in as no-ops
    meta_env = env.overlay()
    meta_env.filters = dict(env.filters)
    meta_env.tests = dict(env.tests)
    for node in ast.find_all(jinja2.nodes.Filter):
        meta_env.filters.setdefault(node.name, lambda value, *a, **k: value)
    for node in ast.find_all(jinja2.nodes.Test):
        meta_env.tests.setdefault(node.name, lambda value, *a, **k: True)
    try:
        free = jinja2.meta.find_undeclared_variables(meta_env.parse(text))
    except jinja2.TemplateError:
        free = {n.name for n in ast.find_all(jinja2.nodes.Name)}  # every name counts
    for node in ast.find_all(jinja2.nodes.Name):
        if node.ctx == "load" and node.name in REFUSED_NAMES and node.name in free:
            at(node, f"{REFUSED_NAMES[node.name]}: a pushed pillar may not")
    for node in ast.find_all((jinja2.nodes.Filter, jinja2.nodes.Test)):
        if node.name in REFUSED_FILTERS:
            at(node, f"uses the `{node.name}` filter, which {REFUSED_FILTERS[node.name]}: a pushed pillar may not")
    for node in ast.find_all(jinja2.nodes.Getattr):
        if _under(node.attr):
            at(node, f"reads the attribute {node.attr!r}: a pushed pillar may not reach Python internals")
    for node in ast.find_all(jinja2.nodes.Getitem):
        if isinstance(node.arg, jinja2.nodes.Const) and _under(node.arg.value):
            at(node, f"reads the key {node.arg.value!r}: a pushed pillar may not reach Python internals")
    found.sort(key=lambda f: (int(f.path.rsplit(":", 1)[1]) if f.path.rsplit(":", 1)[1].isdigit() else 0, f.message))
    return found, any(n in free for n in GRAIN_NAMES)


# The top-file matchers that look at the minion id only.
_ID_MATCHERS = ("glob", "pcre", "list")
_ID_COMPOUND = re.compile(r"(?:[EL]@\S+|[^@\s]+)")


def grain_targets(tops: dict) -> list[str]:
    """The targets of a rendered top file ({saltenv: {target: [sls or
    {"match": type}, ...]}}) that need more than the minion id: grain,
    pillar, subnet, nodegroup ... matchers, or a compound with one."""
    out = []
    for saltenv, targets in (tops or {}).items():
        if not isinstance(targets, dict):
            continue
        for target, body in targets.items():
            match = "glob"
            for item in body if isinstance(body, list) else []:
                if isinstance(item, dict) and "match" in item:
                    match = str(item["match"])
            if match in _ID_MATCHERS:
                continue
            if match == "compound":
                words = [w for w in re.split(r"[\s()]+", str(target)) if w and w not in ("and", "or", "not")]
                if all(_ID_COMPOUND.fullmatch(w) for w in words):
                    continue
            out.append(f"{saltenv}: {target!r} (match: {match})")
    return out


def served_branches(ext_pillar, default_branch: str = "master", base: str = "master", is_this_repo=None) -> tuple[set[str], bool]:
    """The branches the master's git_pillar serves, from its `ext_pillar`
    option: ({branch, ...}, any_branch).  A remote is "BRANCH URL" or "URL"
    (git_pillar_branch), a per-remote `branch:` overrides it; `__env__`
    serves every branch as the pillarenv of its name (any_branch True, and
    `base`, git_pillar_base, for the base env); with `all_saltenvs: B` it
    serves branch B only, for every env.  `is_this_repo(url)`: when some
    remote's URL is this repository, only those remotes count."""
    remotes = []
    for entry in ext_pillar or []:
        if not isinstance(entry, dict) or "git" not in entry:
            continue
        for remote in entry["git"] or []:
            params = {}
            if isinstance(remote, dict):
                (spec, plist), *_ = remote.items()
                for p in plist or []:
                    if isinstance(p, dict):
                        params.update(p)
            else:
                spec = remote
            words = str(spec).split()
            remotes.append((words, params))
    if is_this_repo and any(words and is_this_repo(words[-1]) for words, _ in remotes):
        remotes = [(words, params) for words, params in remotes if words and is_this_repo(words[-1])]
    branches: set[str] = set()
    anything = False
    for words, params in remotes:
        branch = str(params.get("branch", words[0] if len(words) > 1 else default_branch))
        if branch == "__env__" and params.get("all_saltenvs"):
            branches.add(str(params["all_saltenvs"]))  # that one branch, for every env
        elif branch == "__env__":
            anything = True
            branches.add(base)
        else:
            branches.add(branch)
    return branches, anything
