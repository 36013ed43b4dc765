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
