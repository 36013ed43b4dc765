#!/usr/bin/env python3
"""The pillar gate: check a pillar tree before the master serves it.

    tools/pillar-gate TREE [--master-config FILE] [--gpg-keydir DIR]
                           [--minion ID ...] [--os Debian,FreeBSD]
                           [--allow-cleartext] [--json]

A pillar repository's CI runs it on a checkout, the pillar repository's
pre-receive hook (tools/pillar_hooks.py) on the pushed revision.  The tree
is untrusted: nothing in it runs before it is accepted.  The gate

1. reads every file, renders nothing: an SLS file whose renderer can run
   code (py, pyobjects, mako, wempy ... anything but jinja|yaml|json|gpg)
   is refused, and so is a Jinja template that names Salt's execution
   functions (`salt`, `__salt__`), the master's options (`opts`), the whole
   context, a filter that reaches the network or the master's files, or an
   attribute starting with `_` (`_utils/lb_gate.py`);
2. renders the tree's pillar the way the master does, through Salt's own
   pillar compiler (top file, Jinja, YAML), in a child process: `salt` in
   its templates is an object that refuses every call, it has no GPG key
   directory and the gpg renderer is off, and (when the gate runs as root)
   it has no network.  Each minion is compiled with its real grains: the
   master's grains cache (`--master-config`), else `grains/<id>.yaml` in the
   tree; a node whose grains are unknown while the pillar targets or reads
   grains is an error;
3. decrypts the compiled pillar's GPG messages here, with the master's key
   (`--gpg-keydir`, or the master's gpg_keydir), each failure at its pillar
   path;
4. validates every `lb` topology it finds with the same code as
   `lb.validate` (`_utils/lb_topology.py`), and the per-minion settings
   (`_check_settings`);
5. refuses secrets kept in clear text in any file of the tree, whatever its
   size (`_utils/lb_secrets.py`; `--allow-cleartext` for a tree that is not
   a pillar repository, e.g. pillar/lab in this repository);
6. renders every node's files (`_utils/lb_render.py`) for each OS family and
   runs the real `haproxy -c` on each node's haproxy.cfg (the haproxy_cfg
   module's check, through the loader).

Exit 0 when everything passes; 1 with one line per error,
`error: <pillar path or file>: <message>`.  Secrets never appear in the
output.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(REPO, "_utils") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "_utils"))

import yaml  # noqa: E402

import lb_gate  # noqa: E402
import lb_parameters  # noqa: E402
import lb_render  # noqa: E402
import lb_secrets  # noqa: E402
import lb_settings  # noqa: E402
import lb_topology  # noqa: E402
import lb_view  # noqa: E402
from lb_topology import Finding  # noqa: E402

DEFAULT_MINION = "pillar-gate"
TREE_SKIP = (".git",)
GRAINS_DIR = "grains"  # grains/<minion id>.yaml in the pillar tree
# What the render child takes from the master's options (the rest is
# Salt's defaults): how the master renders and merges a pillar.
CHILD_OPTS = (
    "renderer",
    "jinja_env",
    "jinja_sls_env",
    "allow_undefined",
    "pillar_source_merging_strategy",
    "pillar_merge_lists",
    "top_file_merging_strategy",
    "env_order",
    "default_top",
    "pillar_includes_override_sls",
    "pillarenv",
    "yaml_utf8",
)


@dataclass
class Result:
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # what was checked, for the summary
    topologies: dict = field(default_factory=dict)  # minion id -> lb raw (decrypted: never print)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {
            "valid": self.ok,
            "errors": [e.as_dict() for e in self.errors],
            "warnings": [w.as_dict() for w in self.warnings],
            "checked": self.checked,
        }


# ---------------------------------------------------------------------------
# Salt: the master's pillar compiler, the haproxy_cfg module


def _scratch_opts(tree: str, scratch: str) -> dict:
    """The options every render of a pushed tree shares: the tree as the only
    pillar source, nothing served, every cache and socket in `scratch`."""
    return {
        "root_dir": scratch,
        "cachedir": os.path.join(scratch, "cache"),
        "sock_dir": os.path.join(scratch, "sock"),
        "pki_dir": os.path.join(scratch, "pki"),
        "log_file": os.path.join(scratch, "log"),
        "pillar_roots": {"base": [tree]},
        "file_roots": {"base": []},
        "ext_pillar": [],
        "pillar_cache": False,
    }


def master_opts(tree: str, scratch: str, master_config: str | None = None, gpg_keydir: str | None = None) -> dict:
    """Master options that render `tree` as the pillar: the master's own
    (renderer, gpg_keydir, merging strategy ...) when `master_config` is
    given, with the tree as the only pillar source and caches in `scratch`."""
    import salt.config

    opts = salt.config.master_config(master_config)
    opts.update(_scratch_opts(os.path.abspath(tree), scratch), gpg_cache=False, gpg_decrypt_must_succeed=True)
    keydir = gpg_keydir or opts.get("gpg_keydir")
    if not keydir and master_config:
        keydir = os.path.join(os.path.dirname(os.path.abspath(master_config)), "gpgkeys")
    if keydir and os.path.isdir(keydir):
        # a private copy: gpg starts an agent for its key directory, and the
        # gate stops its own when done, never the master's
        private = os.path.join(scratch, "gpgkeys")
        shutil.copytree(keydir, private, ignore=shutil.ignore_patterns("S.*", "*.lock", ".#*"))
        os.chmod(private, 0o700)
        opts["gpg_keydir"] = private
    elif keydir:
        opts["gpg_keydir"] = os.path.abspath(keydir)
    return opts


def stop_gpg_agent(opts: dict) -> None:
    keydir = opts.get("gpg_keydir")
    if keydir and os.path.isdir(keydir) and shutil.which("gpgconf"):
        subprocess.run(["gpgconf", "--homedir", keydir, "--kill", "all"], capture_output=True, timeout=30, check=False)


class ExecRefused(Exception):
    pass


class NoExecFunctions:
    """What a pushed template gets as `salt` / `__salt__`: every lookup
    (`salt['cmd.run']`, `salt.cmd.run`, `'x' in salt`) refuses."""

    def _refuse(self, name):
        raise ExecRefused(f"salt[{name!r}]: a pushed pillar may not call Salt's execution functions (the gate refuses it)")

    def __getitem__(self, name):
        self._refuse(name)

    def __contains__(self, name):
        self._refuse(name)

    def __getattr__(self, name):
        raise AttributeError(name)  # Jinja then tries salt[name], which refuses

    def __iter__(self):
        return iter(())

    def __len__(self):
        return 0

    def get(self, name, default=None):
        self._refuse(name)

    def keys(self):
        return []

    def items(self):
        return []

    def values(self):
        return []


def child_main() -> int:
    """The render child (`pillar_gate.py --render-child`): reads a request
    (salt.payload) on stdin, {"tree", "scratch", "opts", "minions": {id:
    grains}}, compiles each minion's pillar with `NoExecFunctions` and no
    gpg, writes {"pillars": {id: pillar}, "top": merged top, "top_errors"}
    on stdout."""
    import salt.config
    import salt.payload
    import salt.pillar

    logging.getLogger().addHandler(logging.NullHandler())
    logging.getLogger("salt").propagate = False
    req = salt.payload.loads(sys.stdin.buffer.read())
    scratch = req["scratch"]
    opts = salt.config.master_config(None)
    opts.update(req["opts"])
    opts.update(
        _scratch_opts(req["tree"], scratch),
        gpg_keydir=os.path.join(scratch, "no-gpg-keys"),
        decrypt_pillar=[],
        pillar_safe_render_error=False,  # the render error's reason, for the gate's message
        renderer_whitelist=[r for r in lb_gate.SAFE_RENDERERS if r != "gpg"],
        renderer_blacklist=["gpg"],  # decrypted by the gate, outside the render
    )
    out = {"pillars": {}, "top": {}, "top_errors": []}
    for mid, grains in req["minions"].items():
        pillar = salt.pillar.Pillar(opts, dict(grains or {}, id=mid), mid, "base", functions=NoExecFunctions())
        if not out["top"] and not out["top_errors"]:
            top, errors = pillar.get_top()
            out["top"] = {env: dict(targets) for env, targets in top.items()}
            out["top_errors"] = [str(e) for e in errors]
        out["pillars"][mid] = pillar.compile_pillar()
    sys.stdout.buffer.write(salt.payload.dumps(out))
    return 0


def compile_in_child(tree: str, opts: dict, minions: dict[str, dict | None]) -> dict:
    """Each minion's pillar of `tree`, compiled by the render child in a
    scratch directory of its own (a copy of the tree; no key directory; no
    network when the gate runs as root: `unshare --net`)."""
    import salt.payload

    scratch = tempfile.mkdtemp(prefix="pillar-gate-render-")
    try:
        copy = os.path.join(scratch, "tree")
        shutil.copytree(tree, copy, symlinks=True, ignore=shutil.ignore_patterns(*TREE_SKIP))
        req = {
            "tree": copy,
            "scratch": scratch,
            "opts": {k: opts[k] for k in CHILD_OPTS if k in opts},
            "minions": minions,
        }
        cmd = [sys.executable, os.path.abspath(__file__), "--render-child"]
        if os.geteuid() == 0 and shutil.which("unshare"):
            cmd = ["unshare", "--net", "--", *cmd]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": scratch, "LANG": "C.UTF-8", "TMPDIR": scratch}
        r = subprocess.run(cmd, input=salt.payload.dumps(req), capture_output=True, env=env, cwd=scratch, timeout=600, check=False)
        if r.returncode != 0:
            last = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {r.returncode}"]
            raise RuntimeError(f"the render child failed: {last[0][:500]}")
        return salt.payload.loads(r.stdout)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def haproxy_module(scratch: str):
    """The haproxy_cfg execution module through Salt's loader (its `check`
    runs the real `haproxy -c` in a private temporary directory)."""
    import salt.config
    import salt.loader

    opts = salt.config.minion_config(None)
    opts.update(
        id=DEFAULT_MINION,
        file_client="local",
        root_dir=scratch,
        cachedir=os.path.join(scratch, "mcache"),
        pki_dir=os.path.join(scratch, "mpki"),
        sock_dir=os.path.join(scratch, "msock"),
        log_file=os.path.join(scratch, "mlog"),
        module_dirs=[os.path.join(REPO, "_modules")],
        utils_dirs=[os.path.join(REPO, "_utils")],
        file_roots={"base": []},
        pillar_roots={"base": []},
    )
    opts["grains"] = salt.loader.grains(opts)
    opts["pillar"] = {}
    utils = salt.loader.utils(opts)
    mods = salt.loader.minion_mods(opts, utils=utils, whitelist=["haproxy_cfg", "config", "cmd", "grains"])
    return mods


# ---------------------------------------------------------------------------


def _tree_paths(tree: str) -> list[str]:
    """Every regular file of the tree (relative paths), .git left out."""
    out = []
    for root, dirs, files in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if d not in TREE_SKIP)
        for name in sorted(files):
            path = os.path.join(root, name)
            if os.path.isfile(path):
                out.append(os.path.relpath(path, tree))
    return out


def _streamed(tree: str, paths: list[str]):
    """(relpath, pieces) for every file: read as it is scanned, any size."""
    for rel in paths:
        try:
            yield rel, lb_secrets.read_pieces(os.path.join(tree, rel))
        except OSError:
            continue


def _jinja_env(opts: dict):
    """A Jinja environment that parses like Salt's (its extensions, the
    master's jinja_sls_env delimiters); it only parses, never renders."""
    import jinja2
    import salt.utils.jinja

    args = {k: v for k, v in (opts.get("jinja_sls_env") or {}).items() if k.endswith(("_string", "_prefix"))}
    return jinja2.Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols", salt.utils.jinja.SerializerExtension], **args)


def static_findings(tree: str, paths: list[str], opts: dict) -> tuple[list[Finding], list[str]]:
    """What the tree may not do, read without rendering (`lb_gate`):
    (findings, the files whose templates read grains)."""
    env = _jinja_env(opts)
    default = str(opts.get("renderer") or "jinja|yaml")
    found, grain_files = [], []
    for rel in paths:
        try:
            with open(os.path.join(tree, rel), encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError):
            continue  # not text: no renderer reads it
        if rel.endswith(".sls"):
            found += lb_gate.renderer_findings(rel, text.split("\n", 1)[0], default)
        more, grains = lb_gate.template_findings(rel, text, env)
        found += more
        if grains:
            grain_files.append(rel)
    return found, grain_files


def known_grains(tree: str, master_config: str | None, mid: str) -> tuple[dict | None, str]:
    """The minion's grains and where they come from: the master's grains
    cache (minion data cache, bank minions/<id>), else the tree's
    grains/<id>.yaml; (None, why) when neither has them."""
    if master_config:
        import salt.cache
        import salt.config

        mopts = salt.config.master_config(master_config)
        try:
            data = salt.cache.factory(mopts).fetch(f"minions/{mid}", "data") or {}
        except Exception:  # an unreadable cache is no grains
            data = {}
        if isinstance(data.get("grains"), dict) and data["grains"]:
            return data["grains"], "the master's grains cache"
    path = os.path.join(tree, GRAINS_DIR, f"{mid}.yaml")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            grains = yaml.safe_load(fh)
        if not isinstance(grains, dict):
            raise ValueError(f"{GRAINS_DIR}/{mid}.yaml: must be a mapping of grains")
        return grains, f"{GRAINS_DIR}/{mid}.yaml"
    if master_config:
        return None, f"neither the master's grains cache nor {GRAINS_DIR}/{mid}.yaml in the tree has them"
    return None, f"no {GRAINS_DIR}/{mid}.yaml in the tree, and no --master-config for the master's grains cache"


def tree_minions(tree: str) -> list[str]:
    """The minions the tree keeps grains for (grains/<id>.yaml)."""
    d = os.path.join(tree, GRAINS_DIR)
    return sorted(n[: -len(".yaml")] for n in os.listdir(d) if n.endswith(".yaml")) if os.path.isdir(d) else []


def _pgp_strings(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _pgp_strings(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _pgp_strings(v, path + (i,))
    elif isinstance(node, str) and lb_secrets.PGP_MESSAGE in node:
        yield path, node


def decrypt(opts: dict, pillar: dict) -> list[Finding]:
    """Decrypt, in place, every GPG message in a compiled pillar with Salt's
    gpg renderer and the master's key; each failure at its pillar path."""
    import salt.loader

    found = []
    gpg = None
    for path, text in list(_pgp_strings(pillar)):
        if gpg is None:
            gpg = salt.loader.render(dict(opts, gpg_decrypt_must_succeed=True), {})["gpg"]
        try:
            value = gpg(text)
        except Exception as exc:
            reasons = sorted(
                {ln.strip().strip("\"'") for ln in re.split(r"\\n|\n", str(exc)) if ln.strip().strip("\"'").startswith("gpg: ")}
            )
            reasons = [r for r in reasons if "PGP MESSAGE" not in r][:3]
            found.append(
                Finding(
                    ":".join(str(p) for p in path),
                    f"cannot be decrypted with the master's key ({'; '.join(reasons) or type(exc).__name__})",
                )
            )
            continue
        node = pillar
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return found


def _check_settings(mid: str, pillar: dict) -> list[Finding]:
    """The per-minion settings a pillar gives a minion (``lb_settings``, and
    the keys of earlier releases it replaced), checked before the master
    serves them, by the same validator the modules run when they
    read them (``_utils/lb_settings.py``): unknown keys, and values a config
    file or a shell would read otherwise, are refused with their path."""
    return [Finding(f"{path} (minion {mid})", message) for path, message in lb_settings.findings(pillar)]


def _render_errors(errors, minion_id: str) -> list[Finding]:
    """Salt's render errors, each on one line: the reason and the line
    number, never the traceback or the template excerpt Salt appends (it
    may quote a secret), nor a GPG message."""
    out = []
    for e in errors or []:
        text = str(e)
        line = re.search(r"; line (\d+)", text)
        head = re.split(r"\n(?:Traceback|---|; line \d+)", text.split(lb_secrets.PGP_MESSAGE)[0])[0]
        head = re.sub(r"; line \d+.*", "", head, flags=re.S)
        text = " ".join(head.split()).rstrip(" '(\"b") or text.splitlines()[0]
        if line:
            text += f" (line {line.group(1)})"
        out.append(Finding(f"pillar (minion {minion_id})", text))
    return out


def _pair_nodes(pillars: dict) -> dict[str, str]:
    """{node id: its pillar path} of every pair's node in the compiled pillars."""
    out = {}
    for pil in pillars.values():
        raw = pil.get(lb_topology.ROOT)
        if isinstance(raw, dict) and isinstance(raw.get("pairs"), dict):
            for name, pair in raw["pairs"].items():
                for node in (pair or {}).get("nodes") or {}:
                    out.setdefault(str(node), f"{lb_topology.ROOT}:pairs:{name}:nodes:{node}")
    return out


def gate(
    tree: str,
    master_config: str | None = None,
    gpg_keydir: str | None = None,
    minions: list[str] | None = None,
    os_families=lb_view.OS_FAMILIES,
    allow_cleartext: bool = False,
    haproxy_check: bool = True,
) -> Result:
    """Run every check on `tree`.  Never raises on a bad tree."""
    res = Result()
    if not os.path.isdir(tree):
        res.errors.append(Finding(tree, "is not a directory"))
        return res
    scratch = tempfile.mkdtemp(prefix="pillar-gate-")
    opts = {}
    try:
        opts = master_opts(tree, scratch, master_config, gpg_keydir)
        paths = _tree_paths(tree)
        # 1. nothing that would run code, before anything is rendered
        found, grain_files = static_findings(tree, paths, opts)
        if found:
            res.errors += found
            res.checked.append("nothing rendered: the tree asks for what a pushed pillar may not do")
            return res
        # 2. each minion's pillar, with its grains, in the render child
        grains: dict[str, dict | None] = {}
        where: dict[str, str] = {}

        def want(mid):
            if mid not in grains:
                try:
                    grains[mid], where[mid] = known_grains(tree, master_config, mid)
                except (ValueError, yaml.YAMLError) as exc:
                    res.errors.append(Finding(f"{GRAINS_DIR}/{mid}.yaml", str(exc).split(": ", 1)[-1]))
                    grains[mid], where[mid] = None, "unreadable"

        for mid in minions or (tree_minions(tree) + [DEFAULT_MINION]):
            want(mid)
        out = compile_in_child(tree, opts, dict(grains))
        pillars, top = out["pillars"], out["top"]
        # the pairs' nodes too: a top file may give `lb` to 'lb-*' only
        nodes = _pair_nodes(pillars)
        new = [n for n in nodes if n not in pillars]
        for mid in new:
            want(mid)
        if new:
            pillars.update(compile_in_child(tree, opts, {n: grains[n] for n in new})["pillars"])
        res.errors += [Finding("top file", e.split(lb_secrets.PGP_MESSAGE)[0]) for e in out["top_errors"]]
        for mid, pil in pillars.items():
            res.errors += _render_errors(pil.get("_errors"), mid)
        # 3. grains: known for every node, or not needed
        needs = lb_gate.grain_targets(top) + [f"{f} reads grains" for f in grain_files]
        for mid in pillars:
            if mid == DEFAULT_MINION and not minions:
                continue  # not a minion: the id the pairs are found with
            label = nodes.get(mid, f"pillar (minion {mid})")
            if grains.get(mid) is not None:
                res.checked.append(f"{mid}: compiled with its grains from {where[mid]}")
            elif needs:
                res.errors.append(
                    Finding(label, f"its grains are unknown ({where[mid]}) and the pillar depends on grains ({'; '.join(needs)})")
                )
            else:
                res.checked.append(f"{mid}: grains unknown ({where[mid]}); compiled with its id, the only thing the pillar reads")
        if res.errors:
            return res
        # 4. decrypt here, with the master's key
        for pil in pillars.values():
            res.errors += [f for f in decrypt(opts, pil) if f not in res.errors]  # the same secret in every node's pillar
        if res.errors:
            return res
        for mid, pil in pillars.items():
            res.errors += _check_settings(mid, pil)
        with_lb = {mid: pil[lb_topology.ROOT] for mid, pil in pillars.items() if lb_topology.ROOT in pil}
        if not with_lb:
            if not res.errors:
                res.errors.append(
                    Finding(lb_topology.ROOT, f"no minion's pillar has an `lb` key (minions tried: {', '.join(pillars)}); give --minion ID")
                )
            return res
        res.topologies = with_lb
        distinct: list[tuple[str, object]] = []
        for mid, raw in with_lb.items():
            if not any(raw == other for _, other in distinct):
                distinct.append((mid, raw))
        models = []
        for mid, raw in distinct:
            report = lb_topology.check(raw)
            res.errors += report.errors
            res.warnings += report.warnings
            if not allow_cleartext:
                res.errors += lb_secrets.cleartext_findings(raw, _streamed(tree, paths))
            res.checked.append(f"lb topology of minion {mid}: {'valid' if report.valid else 'INVALID'}")
            if report.valid:
                models.append(report.model)
        if res.errors or not haproxy_check:
            return res
        mods = haproxy_module(scratch)
        for model in models:
            for pair in model["pairs"].values():
                for node_id in pair["nodes"]:
                    for osf in os_families:
                        res.errors += _check_node(mods, model, pair, node_id, osf, res)
        return res
    except RuntimeError as exc:
        res.errors.append(Finding("pillar", str(exc)))
        return res
    finally:
        stop_gpg_agent(opts)
        shutil.rmtree(scratch, ignore_errors=True)


def _check_node(mods, model, pair, node_id, os_family, res) -> list[Finding]:
    try:
        files = lb_render.render_node(model, node_id, os_family)
    except Exception as exc:  # a renderer bug must not pass the gate
        return [
            Finding(
                f"{lb_topology.ROOT}:pairs:{pair['name']}:nodes:{node_id}",
                f"rendering its files for {os_family} failed: {type(exc).__name__}: {exc}",
            )
        ]
    cfg_path = lb_parameters.of(os_family, "node")["haproxy_config"]
    cfg = files[cfg_path].content
    others = {p: {"content": f.content, "mode": f.mode} for p, f in files.items() if p != cfg_path and p.endswith(".pem")}
    result = mods["haproxy_cfg.check"](text=cfg, files=others, path=cfg_path)
    res.checked.append(f"{node_id} ({os_family}): {len(files)} files rendered, haproxy -c {'OK' if result['valid'] else 'FAILED'}")
    if result["valid"]:
        return []
    found = lb_gate.haproxy_findings(pair, node_id, os_family, cfg, result["message"])
    return found or [
        Finding(
            f"{lb_topology.ROOT}:pairs:{pair['name']}:haproxy", f"haproxy -c rejects {node_id}'s config ({os_family}): {result['message']}"
        )
    ]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--render-child"]:
        return child_main()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree", help="the pillar tree (a directory with top.sls)")
    ap.add_argument("--master-config", help="the salt-master's config file: its renderer and gpg_keydir are used")
    ap.add_argument("--gpg-keydir", help="the GPG home holding the master's pillar key (default: the master's gpg_keydir)")
    ap.add_argument("--minion", action="append", help="render the pillar for this minion id (repeatable; the pairs' nodes are added)")
    ap.add_argument("--os", default=",".join(lb_view.OS_FAMILIES), help="OS families to render and check (default: %(default)s)")
    ap.add_argument("--allow-cleartext", action="store_true", help="do not refuse secrets kept in clear text")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    logging.getLogger().addHandler(logging.NullHandler())
    logging.getLogger("salt").propagate = False  # Salt's own log lines quote tracebacks and ciphertext
    res = gate(
        args.tree,
        master_config=args.master_config,
        gpg_keydir=args.gpg_keydir,
        minions=args.minion,
        os_families=[o for o in args.os.split(",") if o],
        allow_cleartext=args.allow_cleartext,
    )
    if args.json:
        print(json.dumps(res.as_dict(), indent=2))
    else:
        for line in res.checked:
            print(f"checked: {line}")
        for w in res.warnings:
            print(f"warning: {w}")
        for e in res.errors:
            print(f"error: {e}")
        print(f"pillar-gate: {args.tree}: {'OK' if res.ok else f'REJECTED ({len(res.errors)} errors)'}")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
