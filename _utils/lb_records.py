"""The master's records of the load-balancer pairs, under
``<cachedir>/lb/``: plain file I/O, no Salt (the ``lb`` runner and the
``lb_recorder`` engine both write them).

- ``history.jsonl``: one JSON line per confirmed transition or ``lb/...``
  event, appended (a batch is one ``write``);
- ``splitbrain.json``: the split brains declared and not yet resolved,
  ``{pair: {vhid: {"since", "nodes", "vip"}}}``;
- ``last.json``: the state last recorded per ``<node>/<vhid>``;
- ``lock``: an exclusive lock across processes, held only to read and
  write these files, never across a query or a sleep.
"""

from __future__ import annotations

import fcntl
import json
import os

import lb_files


class Records:
    """The record files of one master (``cachedir`` from its opts)."""

    def __init__(self, cachedir: str):
        self.dir = os.path.join(cachedir, "lb")

    def path(self, name: str) -> str:
        os.makedirs(self.dir, exist_ok=True)
        return os.path.join(self.dir, name)

    def lock(self) -> _Lock:
        return _Lock(self.path("lock"))

    # history ---------------------------------------------------------------

    def append(self, *recs: dict) -> None:
        """Append records to the history in one write (O_APPEND: a batch is
        never interleaved with another writer's)."""
        if not recs:
            return
        text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in recs)
        fd = os.open(self.path("history.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def history(self) -> list[dict]:
        out = []
        try:
            with open(self.path("history.jsonl"), encoding="utf-8") as fh:
                for line in fh:
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue
        except FileNotFoundError:
            pass
        return out

    # small JSON documents ----------------------------------------------------

    def load(self, name: str) -> dict:
        try:
            with open(self.path(name), encoding="utf-8") as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else {}
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def save(self, name: str, data: dict) -> None:
        lb_files.write_atomic(self.path(name), json.dumps(data, sort_keys=True, indent=1), 0o640)


class _Lock:
    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        self.fh = open(self.path, "a+")  # noqa: SIM115
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()
