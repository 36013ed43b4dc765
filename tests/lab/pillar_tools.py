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
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from lab import REPO, saltcfg, tls

LBS = ("lb-a", "lb-b")
ROOTS = (REPO / "pillar" / "lab", tls.PILLAR_DIR)


def _path(relpath: str) -> Path:
    if os.path.isabs(relpath) or ".." in Path(relpath).parts:
        raise ValueError(f"{relpath!r}: give a path inside the lab's pillar (like lb.sls)")
    for root in ROOTS:
        if (root / relpath).is_file():
            return root / relpath
    raise FileNotFoundError(f"no pillar file {relpath!r} in {', '.join(str(r) for r in ROOTS)}")


def read_pillar(relpath: str) -> str:
    """The text of a lab pillar file as the master serves it now."""
    return _path(relpath).read_text()


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
    original = path.read_text()
    if new_text == original:
        raise ValueError(f"{relpath}: the edit changes nothing")
    try:
        _write(path, new_text)
        refresh(minions)
        yield
    finally:
        _write(path, original)
        refresh(minions)
