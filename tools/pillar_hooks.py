#!/usr/bin/env python3
"""The pillar repository's git hooks.

    hooks/pre-receive:   exec <venv>/bin/python tools/pillar_hooks.py pre-receive
    hooks/post-receive:  exec <venv>/bin/python tools/pillar_hooks.py post-receive

Configured by the repository's own git config:

    lbpillar.branch        the branch git_pillar serves, when there is no masterconfig (default: main);
                           the branch post-receive applies
    lbpillar.masterconfig  the salt-master's config file (its gpg_keydir, renderer)
    lbpillar.saltbin       the directory holding salt, salt-run (default: this venv's)
    lbpillar.osfamily      the load balancers' OS family, for which files a change touches (default: Debian)

pre-receive (the gate): a push to a ref the master does not serve is
refused, naming it: the served branches are read from the master's
git_pillar config (`ext_pillar` git remotes that name this repository, or
all of them when none does; `__env__` serves every branch), or are
`lbpillar.branch` without a master config.  For a served branch the pushed
revision's tree goes through tools/pillar_gate.py with the master's config
and key; any error rejects the whole push, printing each error with its
pillar path.  Nothing reaches the master or a minion.  Deleting a served
branch is refused.

post-receive (the apply): `salt-run git_pillar.update` (the master fetches
the new revision), `saltutil.refresh_pillar` on every minion, then the
states the change touches (`_utils/lb_gate.affected`, from the old and the
new revision's rendered files) on the minions they touch: on a pair's
nodes the BACKUP first, each with `salt --async` and its job followed to
the end through the master's job cache (`salt-run jobs.lookup_jid JID`
shows it later).  `git push -o apply=false` skips the state runs (the
pillar is still updated and refreshed).  Its exit code does not change
the push (git has accepted it already); failures are printed.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "_utils"))

import pillar_gate  # noqa: E402

import lb_gate  # noqa: E402
import lb_topology  # noqa: E402

ZERO = "0" * 40
APPLY_TIMEOUT = 600  # seconds for one minion's state run
JID_RE = re.compile(r"job ID: (\d{20})")


def git(*args: str, check: bool = True) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=check, timeout=120).stdout


def config(key: str, default: str | None = None) -> str | None:
    out = subprocess.run(["git", "config", "--get", key], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else default


def export(rev: str, dest: str) -> None:
    """The tree of `rev` into `dest` (git archive: the quarantined objects
    of a push in progress are visible to a pre-receive hook)."""
    data = subprocess.run(["git", "archive", "--format=tar", rev], capture_output=True, check=True, timeout=120).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")


def updates(stdin) -> list[tuple[str, str, str]]:
    out = []
    for line in stdin.read().splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.append(tuple(parts))
    return out


def say(text: str = "") -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------------


def _this_repo(url: str) -> bool:
    """Whether a git_pillar remote URL is this repository (a local path or
    file:// URL of the repository the hook runs in)."""
    path = url[len("file://") :] if url.startswith("file://") else url
    if "://" in path or not path.startswith("/"):
        return False
    here = os.path.realpath(os.environ.get("GIT_DIR", "."))
    return os.path.realpath(path) == here


def served() -> tuple[set[str], bool, str]:
    """The branches the master serves from this repository: (branches,
    any branch, where that was read).  From the master's git_pillar config
    (`lbpillar.masterconfig`: its ext_pillar git remotes, those naming this
    repository when one does), else `lbpillar.branch` (default main)."""
    master_config = config("lbpillar.masterconfig")
    if master_config:
        import salt.config

        opts = salt.config.master_config(master_config)
        branches, anything = lb_gate.served_branches(
            opts.get("ext_pillar"), str(opts.get("git_pillar_branch") or "master"), str(opts.get("git_pillar_base") or "master"), _this_repo
        )
        return branches, anything, f"git_pillar in {master_config}"
    return {config("lbpillar.branch", "main")}, False, "git config lbpillar.branch"


def pre_receive(stdin=sys.stdin) -> int:
    master_config = config("lbpillar.masterconfig")
    branches, anything, source = served()
    rc = 0
    for _old, new, ref in updates(stdin):
        name = ref[len("refs/heads/") :] if ref.startswith("refs/heads/") else None
        if name is None or not (anything or name in branches):
            what = f"branch {name!r}" if name is not None else ref
            say(
                f"pillar-gate: refusing {what}: the master serves only {', '.join(sorted(branches)) or 'no branch'} of this repository ({source})"
            )
            rc = 1
            continue
        if new == ZERO:
            say(f"pillar-gate: refusing to delete {ref}: the master serves it")
            rc = 1
            continue
        tmp = tempfile.mkdtemp(prefix="pillar-gate-tree-")
        try:
            export(new, tmp)
            res = pillar_gate.gate(tmp, master_config=master_config)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for w in res.warnings:
            say(f"warning: {w}")
        for e in res.errors:
            say(f"error: {e}")
        if res.ok:
            say(f"pillar-gate: {new[:12]} on {ref}: OK ({'; '.join(res.checked)})")
        else:
            say(f"pillar-gate: {new[:12]} on {ref}: REJECTED ({len(res.errors)} errors); nothing was changed on the master or the minions")
            rc = 1
    return rc


def _model(rev: str, master_config: str | None) -> dict | None:
    """The `lb` model of a revision (rendered like the master does), or
    None when there is none (a first push) or it does not render."""
    if rev == ZERO:
        return None
    tmp = tempfile.mkdtemp(prefix="pillar-hook-tree-")
    try:
        export(rev, tmp)
        res = pillar_gate.gate(tmp, master_config=master_config, haproxy_check=False, allow_cleartext=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for raw in res.topologies.values():
        report = lb_topology.check(raw)
        if report.valid:
            return report.model
    return None


class Salt:
    def __init__(self, saltbin: str, master_config: str | None):
        self.bin = saltbin
        self.conf = ["-c", os.path.dirname(master_config)] if master_config else []

    def run(self, tool: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        # not the hook's GIT_DIR & co: git_pillar runs git itself
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        return subprocess.run([os.path.join(self.bin, tool), *self.conf, *args], capture_output=True, text=True, timeout=timeout, env=env)

    def json(self, tool: str, *args: str, timeout: float = 300):
        static = ["--static"] if tool == "salt" else []  # one JSON document, not one per minion
        r = self.run(tool, *args, "--out=json", *static, timeout=timeout)
        try:
            return json.loads(r.stdout or "null")
        except json.JSONDecodeError:
            return {"_error": (r.stdout + r.stderr).strip()[-2000:]}

    def apply(self, target: list[str], tgt_type: str, mods: str) -> tuple[str | None, dict]:
        """state.apply `mods` on the target, published with --async; wait
        for every targeted minion's return in the job cache.  A minion busy
        with another state run is retried (bounded)."""
        args = ["-C", " or ".join(target)] if tgt_type == "compound" else ["-L", ",".join(target)]
        deadline = time.monotonic() + APPLY_TIMEOUT
        jid, returns = None, {}
        for _ in range(20):
            r = self.run("salt", "--async", *args, "state.apply", mods, timeout=60)
            m = JID_RE.search(r.stdout + r.stderr)
            if not m:
                return None, {"_error": (r.stdout + r.stderr).strip()}
            jid = m.group(1)
            expected = None
            while time.monotonic() < deadline:
                job = self.json("salt-run", "jobs.list_job", jid)
                if isinstance(job, dict):
                    expected = expected or job.get("Minions")
                    returns = job.get("Result") or {}
                    if expected is not None and set(expected) <= set(returns):
                        break
                time.sleep(1)
            busy = [m for m, ret in returns.items() if _busy(ret)]
            if not busy or time.monotonic() >= deadline:
                break
            say(f"  a state run is in progress on {', '.join(busy)}: applying again")
            time.sleep(3)
        return jid, {m: (ret.get("return") if isinstance(ret, dict) else ret) for m, ret in returns.items()}


def _busy(ret) -> bool:
    value = ret.get("return") if isinstance(ret, dict) else ret
    return isinstance(value, list) and any("is running as PID" in str(x) for x in value)


def _summary(ret) -> tuple[str, bool]:
    if not isinstance(ret, dict):
        return f"no state run: {str(ret)[:300]}", False
    failed = [k for k, v in ret.items() if isinstance(v, dict) and v.get("result") is False]
    changed = [k for k, v in ret.items() if isinstance(v, dict) and v.get("changes")]
    text = f"{len(ret)} states, {len(changed)} changed, {len(failed)} failed"
    for k in failed:
        text += f"\n    FAILED {k.split('_|-')[1] if '_|-' in k else k}: {str(ret[k].get('comment'))[:300]}"
    return text, not failed


def post_receive(stdin=sys.stdin) -> int:
    branch = f"refs/heads/{config('lbpillar.branch', 'main')}"
    master_config = config("lbpillar.masterconfig")
    salt = Salt(config("lbpillar.saltbin", os.path.dirname(sys.executable)), master_config)
    push_options = [os.environ.get(f"GIT_PUSH_OPTION_{i}", "") for i in range(int(os.environ.get("GIT_PUSH_OPTION_COUNT", "0") or 0))]
    apply_states = "apply=false" not in push_options
    ok = True
    for old, new, ref in updates(stdin):
        if ref != branch or new == ZERO:
            continue
        say(f"pillar: {ref} {old[:12]} -> {new[:12]}")
        r = salt.run("salt-run", "git_pillar.update", timeout=300)
        say(f"  salt-run git_pillar.update: {' '.join(r.stdout.split())[:300] or r.returncode}")
        if r.returncode != 0 or "True" not in r.stdout:
            say(f"  {' '.join(r.stderr.split())[:600]}")
            say("  the master did not update its git_pillar; nothing applied")
            return 1
        refreshed = salt.json("salt", "*", "saltutil.refresh_pillar", "wait=True", timeout=120)
        say(f"  saltutil.refresh_pillar: {len([m for m, v in (refreshed or {}).items() if v is True])} minions refreshed")
        if not apply_states:
            say("  push option apply=false: no state applied")
            continue
        new_model = _model(new, master_config)
        if new_model is None:
            say("  the new revision has no valid `lb` topology: no state applied")
            ok = False
            continue
        change = lb_gate.affected(_model(old, master_config), new_model, config("lbpillar.osfamily", "Debian"))
        for node, paths in change["unassigned"].items():
            say(f"  {node}: changed files no state of this product writes yet: {', '.join(paths)}")
        if not change["lb"] and not change["galera"]:
            say("  no node's files change: no state applied")
        for node in lb_gate.primaries_last(new_model, change["lb"]):
            mods = ",".join(change["lb"][node])
            jid, rets = salt.apply([node], "list", mods)
            text, good = _summary(rets.get(node, rets.get("_error")))
            ok = ok and good
            say(f"  {node}: state.apply {mods}: jid {jid}: {text}")
        for pair, addrs in change["galera"].items():
            jid, rets = salt.apply([f"S@{a}" for a in addrs], "compound", "clustercheck")
            for minion, ret in sorted(rets.items()):
                text, good = _summary(ret)
                ok = ok and good
                say(f"  {minion} (pair {pair} database server): state.apply clustercheck: jid {jid}: {text}")
    return 0 if ok else 1


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    import logging

    logging.getLogger("salt").propagate = False
    if argv[:1] == ["pre-receive"]:
        return pre_receive()
    if argv[:1] == ["post-receive"]:
        return post_receive()
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
