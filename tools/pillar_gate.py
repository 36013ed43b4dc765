#!/usr/bin/env python3
"""The pillar gate: check a pillar tree before the master serves it.

    tools/pillar-gate TREE [--master-config FILE] [--gpg-keydir DIR]
                           [--minion ID ...] [--os Debian,FreeBSD]
                           [--allow-cleartext] [--json]

A pillar repository's CI runs it on a checkout, the pillar repository's
pre-receive hook (tools/pillar_hooks.py) on the pushed revision.  It

1. renders the tree's pillar the way the master does, through Salt's own
   loader and renderers (top file, Jinja, YAML, the GPG renderer with the
   master's key directory): with `--master-config`, from the master's own
   configuration (its renderer, gpg_keydir ...), the tree taking the place
   of its pillar sources;
2. validates every `lb` topology it finds with the same code as
   `lb.validate` (`_utils/lb_topology.py`);
3. refuses secrets kept in clear text in the tree (`_utils/lb_secrets.py`;
   `--allow-cleartext` for a tree that is not a pillar repository, e.g.
   pillar/lab in this repository);
4. renders every node's files (`_utils/lb_render.py`) for each OS family and
   runs the real `haproxy -c` on each node's haproxy.cfg (the haproxy_cfg
   module's check, through the loader).

Exit 0 when everything passes; 1 with one line per error,
`error: <pillar path>: <message>`.  Secrets never appear in the output.
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

import lb_gate  # noqa: E402
import lb_render  # noqa: E402
import lb_secrets  # noqa: E402
import lb_topology  # noqa: E402
from lb_topology import Finding  # noqa: E402

DEFAULT_MINION = "pillar-gate"
TREE_SKIP = (".git",)
MAX_FILE = 1 << 20


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


def master_opts(tree: str, scratch: str, master_config: str | None = None, gpg_keydir: str | None = None) -> dict:
    """Master options that render `tree` as the pillar: the master's own
    (renderer, gpg_keydir, merging strategy ...) when `master_config` is
    given, with the tree as the only pillar source and caches in `scratch`."""
    import salt.config

    opts = salt.config.master_config(master_config)
    opts.update(
        root_dir=scratch,
        cachedir=os.path.join(scratch, "cache"),
        sock_dir=os.path.join(scratch, "sock"),
        pki_dir=os.path.join(scratch, "pki"),
        log_file=os.path.join(scratch, "log"),
        pillar_roots={"base": [os.path.abspath(tree)]},
        ext_pillar=[],
        pillar_cache=False,
        gpg_cache=False,
        file_roots={"base": []},
        gpg_decrypt_must_succeed=True,
    )
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


class _RenderLog(logging.Handler):
    """Salt's pillar compiler logs why an SLS failed to render (and tells
    the caller only "see master log"): keep gpg's own reason."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.reasons: list[str] = []

    def emit(self, record):
        try:
            text = record.getMessage()
        except Exception:
            return
        for line in re.split(r"\\n|\n", text):
            line = line.strip().strip("\"'")
            if line.startswith("gpg: ") and ("failed" in line or "No secret key" in line) and line not in self.reasons:
                self.reasons.append(line)


def compile_pillar(opts: dict, minion_id: str, grains: dict | None = None) -> dict:
    import salt.pillar

    pillar = salt.pillar.Pillar(opts, dict(grains or {}, id=minion_id), minion_id, "base")
    return pillar.compile_pillar()


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


def _tree_files(tree: str) -> dict[str, str]:
    out = {}
    for root, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if d not in TREE_SKIP]
        for name in files:
            path = os.path.join(root, name)
            try:
                if os.path.getsize(path) > MAX_FILE:
                    continue
                with open(path, encoding="utf-8", errors="replace") as fh:
                    out[os.path.relpath(path, tree)] = fh.read()
            except OSError:
                continue
    return out


def _render_errors(errors, minion_id: str, reasons=()) -> list[Finding]:
    out = []
    for e in errors or []:
        text = str(e)
        # Salt quotes the undecryptable cipher in its message: keep what precedes it
        text = text.split("-----BEGIN PGP MESSAGE-----")[0].rstrip(" '(\"b") or text.splitlines()[0]
        if reasons and "see master log" in text:
            text = text.replace("Please see master log for details.", "").strip() + " (" + "; ".join(reasons) + ")"
        out.append(Finding(f"pillar (minion {minion_id})", text))
    return out


def gate(
    tree: str,
    master_config: str | None = None,
    gpg_keydir: str | None = None,
    minions: list[str] | None = None,
    os_families=lb_render.OS_FAMILIES,
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
    log = _RenderLog()
    logging.getLogger("salt").addHandler(log)
    try:
        opts = master_opts(tree, scratch, master_config, gpg_keydir)
        ids = list(minions or [DEFAULT_MINION])
        seen: dict[str, dict] = {}
        for mid in ids:
            seen[mid] = compile_pillar(opts, mid)
        # the pairs' nodes too: a top file may give `lb` to 'lb-*' only
        for pil in list(seen.values()):
            raw = pil.get(lb_topology.ROOT)
            if isinstance(raw, dict) and isinstance(raw.get("pairs"), dict):
                for pair in raw["pairs"].values():
                    for node in (pair or {}).get("nodes") or {}:
                        if node not in seen:
                            seen[node] = compile_pillar(opts, str(node))
        for mid, pil in seen.items():
            res.errors += _render_errors(pil.get("_errors"), mid, log.reasons)
        with_lb = {mid: pil[lb_topology.ROOT] for mid, pil in seen.items() if lb_topology.ROOT in pil}
        if not with_lb:
            if not res.errors:
                res.errors.append(
                    Finding(lb_topology.ROOT, f"no minion's pillar has an `lb` key (minions tried: {', '.join(seen)}); give --minion ID")
                )
            return res
        res.topologies = with_lb
        files = _tree_files(tree)
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
                res.errors += lb_secrets.cleartext_findings(raw, files)
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
    finally:
        logging.getLogger("salt").removeHandler(log)
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
    cfg_path = lb_render.OS_PARAMS[os_family]["haproxy_config"]
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree", help="the pillar tree (a directory with top.sls)")
    ap.add_argument("--master-config", help="the salt-master's config file: its renderer and gpg_keydir are used")
    ap.add_argument("--gpg-keydir", help="the GPG home holding the master's pillar key (default: the master's gpg_keydir)")
    ap.add_argument("--minion", action="append", help="render the pillar for this minion id (repeatable; the pairs' nodes are added)")
    ap.add_argument("--os", default=",".join(lb_render.OS_FAMILIES), help="OS families to render and check (default: %(default)s)")
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
