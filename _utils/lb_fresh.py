"""
The product's pure modules (``_utils``), as new as their files.

A salt-minion (and the master's reactor) is one Python process that runs for
weeks.  After ``saltutil.sync_all`` Salt's loader executes the product's
``_modules``, ``_states``, ``_runners`` and ``_beacons`` again, but their
``import carp_common`` finds the module that process imported at its start
in ``sys.modules``: the new execution module ran with the old pure code.
Seen in the lab: after an upgrade the keepalived FIFO script the carp state
installs stayed the old one until the minion was restarted.

Each Salt module of the product calls :func:`refresh` after its imports.
When a file of this directory changed since its module was loaded, every
loaded module of this directory is reloaded in place (twice: a module that
does ``from lb_topology import Finding`` takes the new class on the second
pass), so every holder of a module object sees the new code.
"""

from __future__ import annotations

import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
_seen: dict[str, tuple[int, int] | None] = {}  # module name -> its file's (mtime_ns, size) when loaded


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _process_start() -> float | None:
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - without it: reload to be sure
        return None


def _ours() -> dict:
    """The loaded modules whose file is in this directory, this one aside."""
    out = {}
    for name, mod in list(sys.modules.items()):
        path = getattr(mod, "__file__", None)
        if path and path.endswith(".py") and os.path.dirname(os.path.abspath(path)) == HERE and name != __name__ and "." not in name:
            out[name] = mod
    return out


def refresh() -> list[str]:
    """Reload the product's pure modules if any file changed since it was
    loaded; the names reloaded (none: all were current)."""
    mods = _ours()
    stale = False
    for name, mod in mods.items():
        now = _stamp(mod.__file__)
        if name not in _seen:
            # first seen: imported by this process at some time; its file is
            # what it loaded unless the file changed since this process
            # started (a process that ran an earlier release of the product,
            # without this module, then synced)
            _seen[name] = now
            started = _process_start()
            if now is not None and (started is None or now[0] / 1e9 > started - 1.0):
                stale = True
        elif now != _seen[name]:
            stale = True
    if not stale:
        return []
    for _ in range(2):
        for _name, mod in sorted(mods.items()):
            importlib.reload(mod)
    for name, mod in mods.items():
        _seen[name] = _stamp(mod.__file__)
    return sorted(mods)
