"""Where the `lb` topology keeps secrets, and what to do with them.

Pure Python, no Salt.  One list (`SECRET_FIELDS`) says which pillar values
are secrets: the CARP passwords, the stats users' password hashes, the Galera
probe's MySQL password, the BGP md5sig keys and TLS private keys.  It is used

- to encrypt them for a pillar repository (`replace`, with a function that
  returns a GPG message: `lab/pillar_repo.py`, docs/secrets.md),
- by the gate (`tools/pillar-gate`) to refuse a pillar repository that holds
  one of them in clear text (`cleartext_findings`),
- by the lab's secret scan (`values`).

Paths are pillar paths, as `lb_topology` writes them (`lb:pairs:edge:carp:groups:4:password`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from lb_topology import ROOT, Finding

# Under lb:pairs:<pair>: the keys leading to each secret ("*": any key).
SECRET_FIELDS = (
    ("carp", "groups", "*", "password"),
    ("haproxy", "userlists", "*", "users", "*", "password_hash"),
    ("galera_probe", "password"),
    ("routing", "bgp", "neighbors", "*", "md5sig_password"),
    ("haproxy", "listeners", "*", "tls", "key"),
)

PGP_MESSAGE = "-----BEGIN PGP MESSAGE-----"


def _walk(node: Any, keys: tuple, path: tuple):
    if not keys:
        yield path, node
        return
    if not isinstance(node, dict):
        return
    head, rest = keys[0], keys[1:]
    items = node.items() if head == "*" else ([(head, node[head])] if head in node else [])
    for k, v in items:
        yield from _walk(v, rest, path + (k,))


def find(raw: Any) -> list[tuple[str, tuple, Any]]:
    """Every secret in `raw` (the value of the pillar's `lb` key):
    [(pillar path, keys from `lb`, value)], in pillar order.  Missing or
    null values are left out."""
    out = []
    pairs = raw.get("pairs") if isinstance(raw, dict) else None
    if not isinstance(pairs, dict):
        return out
    for pair_name, pair in pairs.items():
        for fields in SECRET_FIELDS:
            for keys, value in _walk(pair, fields, ("pairs", pair_name)):
                if value is None or value == "":
                    continue
                out.append((":".join(str(k) for k in (ROOT,) + keys), keys, value))
    return out


def values(raw: Any) -> list[str]:
    """The secrets' values as strings (each once), longest first."""
    return sorted({str(v) for _, _, v in find(raw)}, key=lambda s: (-len(s), s))


def replace(raw: Any, fn: Callable[[str, Any], Any]) -> Any:
    """A deep copy of `raw` with every secret replaced by fn(path, value)."""
    out = copy.deepcopy(raw)
    for path, keys, value in find(raw):
        node = out
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = fn(path, value)
    return out


def is_encrypted(value: Any) -> bool:
    return isinstance(value, str) and PGP_MESSAGE in value


def cleartext_findings(raw: Any, files) -> list[Finding]:
    """The secrets of `raw` (decrypted, as the master sees them) that appear
    in clear text as a YAML value in one of `files`, the pillar repository's
    files: {name: text}, or (name, lines) pairs where lines is any iterable
    of text pieces (`read_pieces`: a file of any size, streamed).  One
    Finding per secret, at its pillar path."""
    single, multi = [], []
    for path, _, value in find(raw):
        text_value = str(value)
        if is_encrypted(text_value):
            continue  # not decrypted (the gate reports that)
        if "\n" not in text_value:
            pattern = re.compile(r"(?:^|[\s:,\[{-])['\"]?" + re.escape(text_value) + r"['\"]?\s*(?:$|[,}\]#])", re.M)
            single.append((path, pattern))
        else:  # a PEM block: its first line that is not a ----- line
            first = next((ln.strip() for ln in text_value.splitlines() if ln.strip() and not ln.startswith("-----")), "")
            if first:
                multi.append((path, first))
    where: dict[str, set[str]] = {path: set() for path, _ in single + multi}
    items = files.items() if isinstance(files, dict) else files
    for name, pieces in items:
        if isinstance(pieces, str):
            pieces = [pieces]
        for piece in pieces:
            for path, pattern in single:
                if name not in where[path] and pattern.search(piece):
                    where[path].add(name)
            for path, first in multi:
                if name not in where[path] and first in piece:
                    where[path].add(name)
    return [
        Finding(path, f"is in clear text in {', '.join(sorted(where[path]))}; encrypt it with the master's GPG key (docs/secrets.md)")
        for path, _ in single + multi
        if where[path]
    ]


PIECE = 1 << 16  # the longest piece `read_pieces` yields at once
OVERLAP = 1 << 12  # repeated from the end of a long line's piece into the next one


def read_pieces(path: str, piece: int = PIECE, overlap: int = OVERLAP):
    """The text of the file at `path`, streamed: one piece per line, a line
    longer than `piece` in pieces that overlap by `overlap` characters (a
    secret shorter than that is never cut in two).  Undecodable bytes are
    replaced."""
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        carry = ""
        while True:
            chunk = fh.readline(piece)
            if not chunk:
                return
            text = carry + chunk
            if chunk.endswith(("\n", "\r")):
                carry = ""
                yield text
            else:  # a long line (or the last one): keep its end for the next piece
                yield text
                carry = text[-overlap:]
