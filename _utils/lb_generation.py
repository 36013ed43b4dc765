"""Generation markers: which configuration file a running daemon loaded.

Pure functions of text (no Salt, no I/O).  HAProxy's marker is in
``haproxy_config`` (a ``description`` its ``show info`` reports); BIRD's is
here: the last line of bird.conf is

    define lb_config_sha256 = "<sha256 of the file without this line>";

and ``birdc eval lb_config_sha256`` asks the running BIRD for the value of
that constant in the configuration it runs.  ``birdc configure`` that fails
(or that BIRD refuses) leaves the old configuration, and the old value; a
file with no such constant makes ``eval`` answer an error (None here).
"""

from __future__ import annotations

import hashlib
import re

BIRD_CONSTANT = "lb_config_sha256"
_BIRD_LINE = re.compile(r'define lb_config_sha256 = "([0-9a-f]{64})";')
_SHA = re.compile(r"[0-9a-f]{64}")


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def bird_unstamp(text: str) -> str:
    """bird.conf without its marker line."""
    return "".join(x for x in _lines(text) if not x.startswith(f"define {BIRD_CONSTANT} "))


def bird_generation(text: str) -> str:
    """What the marker of this bird.conf must say: the sha256 of the rest."""
    return hashlib.sha256(bird_unstamp(text).encode()).hexdigest()


def bird_stamp(text: str) -> str:
    """bird.conf with its marker (last line) set; ``bird_stamp(bird_stamp(t)) == bird_stamp(t)``."""
    base = bird_unstamp(text)
    if base and not base.endswith("\n"):
        base += "\n"
    return f'{base}define {BIRD_CONSTANT} = "{bird_generation(base)}";\n'


def bird_file_generation(text: str | None) -> str | None:
    """The marker of a bird.conf if it names its content (None without one,
    or with one a hand edit made stale)."""
    if text is None:
        return None
    found = [m.group(1) for m in (_BIRD_LINE.fullmatch(x.rstrip("\n")) for x in _lines(text)) if m]
    return found[-1] if found and found[-1] == bird_generation(text) else None


def bird_loaded(eval_output: str) -> str | None:
    """The value ``birdc eval lb_config_sha256`` printed (None for an error:
    the running configuration has no such constant)."""
    lines = [x.strip().strip('"') for x in eval_output.splitlines() if x.strip()]
    lines = [x for x in lines if not x.startswith("BIRD ")]
    return lines[-1] if len(lines) == 1 and _SHA.fullmatch(lines[-1]) else None


# ---------------------------------------------------------------------------
# keepalived
#
# keepalived.conf's ``router_id`` (global_defs) carries the marker:
#
#     router_id <node>.lbgen-<first 16 hex of the sha256 of the file without it>
#
# ``<file without it>`` is the file with ``router_id <node>``.  router_id is a
# free-form name keepalived uses in SMTP alerts only (this product sends none;
# it is not in the VRRP packets).  keepalived reports it back: SIGUSR1 makes
# its VRRP process write ``$TMPDIR/keepalived.data`` (keepalived 2.2.7,
# checked here), whose global definitions carry ``Router ID = <value>`` of
# the configuration it runs; a SIGHUP that has not been acted on (or that
# did not reach it) leaves the old value.

KEEPALIVED_DUMP = "keepalived.data"
KEEPALIVED_MARK = ".lbgen-"
_KA_HEX = r"[0-9a-f]{16}"
_KA_ROUTER_ID = re.compile(r"(\s*router_id\s+)(\S+?)(?:\.lbgen-(" + _KA_HEX + r"))?(\s*)")
_KA_DUMP_LINE = re.compile(r"\s*Router ID = (\S+?)\.lbgen-(" + _KA_HEX + r")\s*")


def _ka_router_id_lines(text: str) -> list[tuple[int, re.Match]]:
    out = []
    for i, line in enumerate(_lines(text)):
        m = _KA_ROUTER_ID.fullmatch(line)
        if m:
            out.append((i, m))
    return out


def keepalived_unstamp(text: str) -> str:
    """keepalived.conf with its router_id lines' marker taken off."""
    lines = _lines(text)
    for i, m in _ka_router_id_lines(text):
        lines[i] = m.group(1) + m.group(2) + m.group(4)
    return "".join(lines)


def keepalived_generation(text: str) -> str:
    """What the marker of this keepalived.conf must say: the first 16 hex
    digits of the sha256 of the file without it."""
    return hashlib.sha256(keepalived_unstamp(text).encode()).hexdigest()[:16]


def keepalived_stamp(text: str) -> str:
    """keepalived.conf with the marker on its (last) router_id line;
    unchanged without one.  ``keepalived_stamp(keepalived_stamp(t)) ==
    keepalived_stamp(t)``."""
    base = keepalived_unstamp(text)
    found = _ka_router_id_lines(base)
    if not found:
        return text
    i, m = found[-1]
    lines = _lines(base)
    lines[i] = f"{m.group(1)}{m.group(2)}{KEEPALIVED_MARK}{keepalived_generation(base)}{m.group(4)}"
    return "".join(lines)


def keepalived_file_generation(text: str | None) -> str | None:
    """The marker of a keepalived.conf if it names its content (None
    without one, or with one a hand edit made stale)."""
    if text is None:
        return None
    found = _ka_router_id_lines(text)
    mark = found[-1][1].group(3) if found else None
    return mark if mark is not None and mark == keepalived_generation(text) else None


def keepalived_loaded(dump: str) -> str | None:
    """The marker in a keepalived data dump (``keepalived.data``): the
    ``Router ID`` of the configuration it runs (None without a marker)."""
    for line in dump.splitlines():
        if line.strip().startswith("Router ID = "):
            m = _KA_DUMP_LINE.fullmatch(line)
            return m.group(2) if m else None
    return None


# ---------------------------------------------------------------------------
# the verdict every daemon's `loaded` returns


def compare(
    daemon: str,
    path: str,
    file_gen: str | None,
    loaded_gen: str | None = None,
    running: bool = True,
    unanswered: str = "",
    marker: str = "generation marker",
) -> dict:
    """Whether `daemon` runs the configuration file `path`: its marker
    (`file_gen`, None when the file carries no valid one) against the one
    the running daemon reported (`loaded_gen`; `unanswered` says why it
    gave none).  ``{"running", "file", "loaded", "current", "reason"}``:
    ``current`` True when they are the same, False when the daemon runs
    another generation or did not answer, None when there is nothing to
    compare (the daemon does not run, or the file has no valid marker)."""
    out = {"running": bool(running), "file": file_gen, "loaded": loaded_gen, "current": None, "reason": ""}
    if not running:
        out["reason"] = f"{daemon} is not running"
    elif unanswered:
        out.update(current=False, reason=unanswered)
    elif file_gen is None:
        out["reason"] = f"{path} carries no valid {marker}: cannot tell which config {daemon} runs"
    elif loaded_gen == file_gen:
        out["current"] = True
    else:
        out["current"] = False
        out["reason"] = (
            f"{daemon} runs an older config than {path} (it reports {(loaded_gen or 'no marker')[:12]}, the file is {file_gen[:12]})"
        )
    return out
