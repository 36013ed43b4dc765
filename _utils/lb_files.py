"""Writing a file on a node: the one atomic write every module of the
product uses (a reader sees the old file or the new one, never half of one).
"""

import os
import tempfile


def write_atomic(path: str, content: str, mode: int = 0o644, group: int | None = None) -> None:
    """Write `content` through a temporary file in the same directory and
    rename it over `path`.  The temporary file gets `mode` (and `group`, a
    gid) before the content lands, so a 0600 file never exists with a wider
    mode, even for an instant; it is synced before the rename.  The
    directory is made when missing."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        os.fchmod(fd, mode)
        if group is not None:
            os.fchown(fd, -1, group)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
