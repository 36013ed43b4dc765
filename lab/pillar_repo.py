"""The lab's pillar repository: what the lab master reads its pillar from.

At `up` (lab/saltcfg.py, `write_configs`) the lab

- generates its own GPG key in the master's key directory
  (.lab/master/gpgkeys, 0700; Salt's default place is <config dir>/gpgkeys),
  never in git;
- creates a bare repository, .lab/pillar.git, and seeds its branch `main`
  with pillar/lab: the same files, except that in lb.sls every secret
  (`_utils/lb_secrets.py`: CARP passwords, stats password hashes, the probe's
  MySQL password, BGP md5sig keys) is a GPG message encrypted to the lab's
  key, and the file starts with `#!jinja|yaml|gpg`;
- installs the hooks (tools/pillar_hooks.py): pre-receive runs the gate
  (tools/pillar-gate) with the master's config and key, post-receive updates
  git_pillar on the master and applies the changed states.

pillar/lab stays the plaintext source the lab's plan reads (lab/plan.py):
its secrets are lab-only values.  The repository is what the master serves.

`push({relpath: text}, message)` commits plaintext pillar files (lb.sls's
secrets are encrypted on the way) and pushes them through the hooks.

Each `up` seeds the repository again from pillar/lab (the plan reads
pillar/lab).  Commits pushed to it since its last seed are not lost: they
go to .lab/pillar-<time>.bundle first, and `up` prints their list.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from lab import BIN, LAB_DIR, MASTER_DIR, REPO

PILLAR_SRC = REPO / "pillar" / "lab"
PILLAR_GIT = LAB_DIR / "pillar.git"
BRANCH = "main"
GPG_UID = "lb-pair lab pillar <pillar@lab.invalid>"
HOOKS = ("pre-receive", "post-receive")
ENCRYPTED_FILES = ("lb.sls",)  # the files that hold secrets
SHEBANG = "#!jinja|yaml|gpg"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "lab",
    "GIT_AUTHOR_EMAIL": "lab@lab.invalid",
    "GIT_COMMITTER_NAME": "lab",
    "GIT_COMMITTER_EMAIL": "lab@lab.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}

sys.path.insert(0, str(REPO / "_utils"))
import lb_secrets  # noqa: E402


def gpg_home() -> Path:
    return MASTER_DIR / "gpgkeys"


def _gpg(*args: str, input: str | None = None, home: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["gpg", "--homedir", str(home or gpg_home()), "--batch", "--no-tty", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def stop_agent(home: Path | None = None) -> None:
    """gpg starts a gpg-agent for the key directory: stop it (by its socket,
    gpgconf --kill; nothing else is signalled)."""
    home = home or gpg_home()
    if home.is_dir():
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, timeout=30)


def make_key(home: Path | None = None) -> str:
    """A new key pair without passphrase (the master decrypts unattended) in
    `home` (0700).  Returns its fingerprint."""
    home = home or gpg_home()
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    try:
        _gpg("--passphrase", "", "--pinentry-mode", "loopback", "--quick-gen-key", GPG_UID, "default", "default", "never", home=home)
        return fingerprint(home)
    finally:
        stop_agent(home)


def fingerprint(home: Path | None = None) -> str:
    out = _gpg("--with-colons", "--list-keys", GPG_UID, home=home).stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def encrypt(value: str, home: Path | None = None) -> str:
    """`value` as an ASCII-armored GPG message to the lab's key (the value
    goes on gpg's stdin, never on a command line)."""
    home = home or gpg_home()
    return _gpg("--trust-model", "always", "--armor", "--encrypt", "--recipient", fingerprint(home), input=str(value), home=home).stdout


class _Literal(str):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, lambda d, data: d.represent_scalar("tag:yaml.org,2002:str", data, style="|"))


def repo_text(relpath: str, text: str, home: Path | None = None) -> str:
    """The repository's version of a plaintext pillar file: lb.sls with its
    secrets encrypted (and the gpg renderer named), other files as they are.
    Text that is not a YAML mapping is kept as it is (the gate says why)."""
    if relpath not in ENCRYPTED_FILES:
        return text
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if not isinstance(data, dict) or "lb" not in data:
        return text
    data = dict(data, lb=lb_secrets.replace(data["lb"], lambda path, value: _Literal(encrypt(value, home))))
    head = (
        f"{SHEBANG}\n"
        f"# The lab's `lb` pillar (from pillar/lab/{relpath}); its secrets are GPG messages to\n"
        "# the master's key (docs/secrets.md).  Edit through a commit and a push.\n"
    )
    return head + yaml.dump(data, Dumper=_Dumper, default_flow_style=False, sort_keys=False, width=1000)


def _git(*args: str, cwd=None, check=True, timeout=300) -> subprocess.CompletedProcess:
    env = dict(os.environ, **GIT_ENV)
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=check)


def hook_script(name: str) -> str:
    return (
        f'#!/bin/sh\n# Installed by the lab (lab/pillar_repo.py).\nexec "{BIN / "python"}" "{REPO / "tools" / "pillar_hooks.py"}" {name}\n'
    )


def install_hooks(repo: Path, master_config: Path) -> None:
    """The gate (pre-receive) and the apply (post-receive), configured by
    the repository's git config (tools/pillar_hooks.py reads it)."""
    for key, value in (
        ("lbpillar.branch", BRANCH),
        ("lbpillar.masterconfig", str(master_config)),
        ("lbpillar.saltbin", str(BIN)),
        ("receive.advertisePushOptions", "true"),
    ):
        _git("--git-dir", str(repo), "config", key, value)
    for name in HOOKS:
        path = repo / "hooks" / name
        path.write_text(hook_script(name))
        path.chmod(0o755)


SEED_MESSAGE = "lab pillar, seeded from pillar/lab at lab up"


def pushed_since_seed(repo: Path = PILLAR_GIT) -> list[str]:
    """The commits of the branch after its seed commit (what was pushed to
    it), newest first, as `<id> <subject>` lines; none for no repository."""
    if not (repo / "HEAD").exists():
        return []
    res = _git("--git-dir", str(repo), "log", "--format=%H %s", BRANCH, check=False)
    out = []
    for line in res.stdout.splitlines():
        if line.split(" ", 1)[-1] == SEED_MESSAGE:
            break
        out.append(line)
    return out


def keep_pushed(repo: Path = PILLAR_GIT, out=sys.stderr) -> Path | None:
    """Before a re-seed: the commits pushed to the repository since its seed
    go to a bundle beside it (`git clone <bundle>` gets them back), and the
    lab says so on `out`.  Returns the bundle's path (None: nothing pushed)."""
    pushed = pushed_since_seed(repo)
    if not pushed:
        return None
    bundle = repo.parent / f"pillar-{time.strftime('%Y%m%d-%H%M%S')}.bundle"
    _git("--git-dir", str(repo), "bundle", "create", str(bundle), BRANCH)
    print(
        f"lab: the pillar repository {repo} is seeded again from pillar/lab; "
        f"the {len(pushed)} commit(s) pushed to it since its seed are kept in {bundle} "
        f"(git clone {bundle}), newest first:\n  " + "\n  ".join(pushed),
        file=out,
    )
    return bundle


# pillar/lab/carp.sls: the carp module's paths for load balancers that are
# Mininet hosts (they share this machine's filesystem); a booted one
# (`up --booted`, lab/lbhosts.py) has its own root and does without
MININET_ONLY = ("carp.sls",)


def seed(master_config: Path, src: Path = PILLAR_SRC, repo: Path = PILLAR_GIT, home: Path | None = None, booted: bool = False) -> str:
    """A new bare repository `repo` whose branch holds `src`'s files (lb.sls
    encrypted), with the hooks installed; for a `booted` lab, without
    MININET_ONLY's files (nor their entries in top.sls).  Commits pushed to
    the repository it replaces are kept in a bundle, and said so
    (keep_pushed).  Returns the commit id."""
    keep_pushed(repo)
    shutil.rmtree(repo, ignore_errors=True)
    _git("init", "-q", "--bare", "-b", BRANCH, str(repo))
    work = Path(tempfile.mkdtemp(prefix="pillar-seed-"))
    try:
        _git("init", "-q", "-b", BRANCH, str(work))
        for path in sorted(src.iterdir()):
            if path.is_file() and path.suffix == ".sls" and not (booted and path.name in MININET_ONLY):
                text = path.read_text()
                if booted and path.name == "top.sls":
                    text = _top_without(text, {name[: -len(".sls")] for name in MININET_ONLY})
                (work / path.name).write_text(repo_text(path.name, text, home))
        _git("add", "-A", cwd=work)
        _git("commit", "-q", "-m", SEED_MESSAGE, cwd=work)
        _git("push", "-q", str(repo), f"{BRANCH}:{BRANCH}", cwd=work)
        head = _git("rev-parse", "HEAD", cwd=work).stdout.strip()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        stop_agent(home)
    install_hooks(repo, master_config)
    return head


def _top_without(text: str, names: set[str]) -> str:
    """top.sls without the SLS `names` (and targets left with none)."""
    top = yaml.safe_load(text)
    for env, targets in top.items():
        kept = {}
        for target, entries in targets.items():
            entries = [e for e in entries if e not in names]
            if any(not isinstance(e, dict) for e in entries):
                kept[target] = entries
        top[env] = kept
    head = "# pillar/lab/top.sls without what only Mininet hosts need (lab/pillar_repo.py, MININET_ONLY)\n"
    return head + yaml.safe_dump(top, default_flow_style=False, sort_keys=False)


def read(relpath: str, repo: Path = PILLAR_GIT) -> str:
    """A file of the branch as committed (ciphertext for lb.sls)."""
    return _git("--git-dir", str(repo), "show", f"{BRANCH}:{relpath}").stdout


def head(repo: Path = PILLAR_GIT) -> str:
    return _git("--git-dir", str(repo), "rev-parse", BRANCH).stdout.strip()


def push(
    files: dict[str, str],
    message: str,
    options: tuple[str, ...] = (),
    repo: Path = PILLAR_GIT,
    encrypt_secrets: bool = True,
    home: Path | None = None,
) -> subprocess.CompletedProcess:
    """Commit `files` ({relpath: plaintext}) on the branch and push them
    through the hooks.  Returns git push's result: returncode 0 when the
    pre-receive gate accepted it; its stderr holds the hooks' output
    (`remote: ...`)."""
    work = Path(tempfile.mkdtemp(prefix="pillar-push-"))
    try:
        _git("clone", "-q", "-b", BRANCH, str(repo), str(work / "w"))
        w = work / "w"
        for relpath, text in files.items():
            (w / relpath).write_text(repo_text(relpath, text, home) if encrypt_secrets else text)
        _git("add", "-A", cwd=w)
        _git("commit", "-q", "--allow-empty", "-m", message, cwd=w)
        args = ["push"]
        for opt in options:
            args += ["-o", opt]
        return _git(*args, "origin", f"{BRANCH}:{BRANCH}", cwd=w, check=False, timeout=900)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        stop_agent(home)
