"""The one way lab tests change the lab master's pillar.

    from pillar_tools import edited_pillar, read_pillar

    text = read_pillar("lab_tls.sls")
    with edited_pillar("lab_tls.sls", text.replace("a", "b")):
        ...   # the minions already see the edited pillar here
    # the original is back, and the minions see it again

`relpath` names a file of the lab's pillar as the master serves it: the
files of pillar/lab (lb.sls, haproxy.sls, ...) and those the lab generates
at `up` in .lab/pillar (lab_tls.sls: the HTTPS listener with its
certificate and key, lab/tls.py).  Tests never write pillar files
themselves: when the lab master reads its pillar from somewhere else (a git
repository), this module is what changes, not the tests.

Every edit is restored on exit, also when the test fails, and the pillar is
refreshed on the minions both ways (`saltutil.refresh_pillar wait=True`).
Restoring the pillar does not re-apply states: a test that applied the
edited pillar applies the original again itself.

The files of pillar/lab are served from the lab's pillar repository
(.lab/pillar.git, git_pillar; lab/pillar_repo.py): an edit of one of them is
a commit pushed there, through the hooks (the gate: a push it rejects raises
RuntimeError with its output), with the push option `apply=false` (the
post-receive hook updates the master's git_pillar and refreshes the minions,
and applies nothing: as before, the test applies what it wants).  lb.sls's
secrets are encrypted on the way.  pillar/lab itself is never written.  The
generated files (.lab/pillar) are still edited in place.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from lab import REPO, pillar_repo, saltcfg, tls

LBS = ("lb-a", "lb-b")
ROOTS = (REPO / "pillar" / "lab", tls.PILLAR_DIR)


_pushed: dict[str, str] = {}  # plaintext of the repository's files pushed by this module


def _in_repo(relpath: str) -> bool:
    """Served from the lab's pillar repository (a lab whose master reads git_pillar)."""
    if not (REPO / "pillar" / "lab" / relpath).is_file() or not pillar_repo.PILLAR_GIT.is_dir():
        return False
    master = saltcfg.MASTER_DIR / "master"
    return master.is_file() and "ext_pillar" in master.read_text()


def _push(relpath: str, text: str, message: str) -> None:
    done = pillar_repo.push({relpath: text}, message, options=("apply=false",))
    if done.returncode != 0:
        raise RuntimeError(f"pushing {relpath} to {pillar_repo.PILLAR_GIT} was refused:\n{done.stdout}{done.stderr}")
    _pushed[relpath] = text


def _path(relpath: str) -> Path:
    if os.path.isabs(relpath) or ".." in Path(relpath).parts:
        raise ValueError(f"{relpath!r}: give a path inside the lab's pillar (like lb.sls)")
    for root in ROOTS:
        if (root / relpath).is_file():
            return root / relpath
    raise FileNotFoundError(f"no pillar file {relpath!r} in {', '.join(str(r) for r in ROOTS)}")


def read_pillar(relpath: str) -> str:
    """The text of a lab pillar file as the master serves it now (for a
    file of the pillar repository: its plaintext)."""
    path = _path(relpath)
    if _in_repo(relpath):
        return _pushed.get(relpath, path.read_text())
    return path.read_text()


def refresh(minions=LBS) -> None:
    """Have the minions fetch their pillar again, and wait for it."""
    ret = saltcfg.salt_json("-L", ",".join(minions), "saltutil.refresh_pillar", "wait=True", timeout=120)
    bad = {m: ret.get(m) for m in minions if ret.get(m) is not True}
    if bad:
        raise RuntimeError(f"saltutil.refresh_pillar failed: {bad}")


def _write(path: Path, text: str) -> None:
    """Replace the file's content, keeping its mode (the generated files are
    0600: they hold a private key)."""
    mode = path.stat().st_mode & 0o777
    tmp = path.with_name(f".{path.name}.edit")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def edited_pillar(relpath: str, new_text: str, minions=LBS):
    """The lab pillar file `relpath` reads `new_text` for the duration of the
    block, and the minions see it; the original text is back afterwards."""
    path = _path(relpath)
    original = read_pillar(relpath)
    if new_text == original:
        raise ValueError(f"{relpath}: the edit changes nothing")
    if _in_repo(relpath):
        _push(relpath, new_text, f"test edit of {relpath}")
        try:
            refresh(minions)
            yield
        finally:
            _push(relpath, original, f"test edit of {relpath} reverted")
            refresh(minions)
        return
    try:
        _write(path, new_text)
        refresh(minions)
        yield
    finally:
        _write(path, original)
        refresh(minions)
