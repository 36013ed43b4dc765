"""HAProxy configuration files as ordered sections, edited without reformatting.

Pure Python (no Salt, no I/O): the `haproxy_cfg` execution module and the
`haproxy_section` state build on it, and it is unit-tested on its own.

A file is a *preamble* (everything before the first section header, kept as
is) followed by *sections*.  A section is:

- ``leading``: the comment lines written right above its header (column 0,
  no blank line in between), e.g. the seed's ``# -- HTTP -- #``; they belong
  to the section below them, so removing a section removes its title too;
- ``header``: the line that opens it (``listen haproxy_10.2.2.4_3306``);
- ``body``: every following line up to the next section's leading comments
  (directives, comments, blank lines).

Lines keep their bytes, tabs and line endings, so ``Config.parse(t).render()
== t`` for any text.  A header is recognised the way HAProxy's own parser
does it: the first word of a line, whatever its indentation, is a section
keyword.  ``replace`` / ``add`` / ``remove`` touch only the lines of the
section they name; ``merge`` builds a whole managed file from a rendered one
while keeping (or removing, by explicit choice) the sections it does not own.
"""

import copy
import difflib
import hashlib
import re
from dataclasses import dataclass, field

# Section keywords of HAProxy 2.6 (cfgparse.c registers these), plus those of
# later releases so that a newer file still parses into the right sections.
SECTION_TYPES = (
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "userlist",
    "peers",
    "resolvers",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "fcgi-app",
    "log-forward",
    # 2.8+ / 3.x
    "crt-store",
    "traces",
    "acme",
)
# Sections whose name is optional (global never has one).
UNNAMED_OK = ("global", "defaults")

REDACTED = "<redacted>"


class ConfigError(ValueError):
    """A section operation that cannot be done (unknown, duplicate or ambiguous section)."""


# ---------------------------------------------------------------------------
# lines and words


def split_lines(text: str) -> list[str]:
    """Lines with their endings (``\\n``, ``\\r\\n``); the last one may have none."""
    return text.splitlines(keepends=True) if text else []


def _ending(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    if line.endswith("\n"):
        return "\n"
    return ""


def _bare(line: str) -> str:
    return line[: len(line) - len(_ending(line))]


def is_blank(line: str) -> bool:
    return not line.strip()


def is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def words(line: str) -> list[str]:
    """The words of a line as HAProxy splits them, quotes and escapes kept
    verbatim (``"a b"`` stays one word with its quotes); an unquoted,
    unescaped ``#`` starts a comment, as in HAProxy's parse_line()."""
    out: list[str] = []
    cur: list[str] = []
    quote = None
    i, s = 0, _bare(line)
    while i < len(s):
        c = s[i]
        if c == "\\" and quote != "'" and i + 1 < len(s):
            cur.append(s[i : i + 2])
            i += 2
            continue
        if quote:
            cur.append(c)
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
            cur.append(c)
        elif c == "#":
            break
        elif c in " \t":
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(c)
        i += 1
    if cur:
        out.append("".join(cur))
    return out


def normalize(line: str) -> str:
    """A directive as a comparable string: its words joined by one space,
    comments dropped ('' for a blank or comment line)."""
    return " ".join(words(line))


def header_of(line: str) -> tuple[str, str] | None:
    """(type, name) if the line opens a section, else None."""
    w = words(line)
    if not w or w[0] not in SECTION_TYPES:
        return None
    kind = w[0]
    if kind == "global":
        return kind, ""
    if kind == "defaults":
        # `defaults`, `defaults NAME`, `defaults NAME from OTHER`, `defaults from OTHER`
        return kind, (w[1] if len(w) > 1 and w[1] != "from" else "")
    return kind, (w[1] if len(w) > 1 else "")


# ---------------------------------------------------------------------------
# sections


@dataclass
class Section:
    type: str
    name: str
    header: str
    body: list[str] = field(default_factory=list)
    leading: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.type, self.name)

    @property
    def label(self) -> str:
        return label(self.key)

    def lines(self) -> list[str]:
        return [*self.leading, self.header, *self.body]

    def text(self) -> str:
        return "".join(self.lines())

    def trailing_blanks(self) -> list[str]:
        n = len(self.body)
        while n and is_blank(self.body[n - 1]):
            n -= 1
        return self.body[n:]

    def content(self) -> str:
        """Header and body without the blank lines that separate it from the
        next section, line endings normalized: what says whether two
        versions of a section are the same."""
        body = self.body[: len(self.body) - len(self.trailing_blanks())]
        return "".join(_bare(x) + "\n" for x in [self.header, *body])

    def directives(self) -> list[str]:
        """The body's directives, normalized (comments and blank lines dropped)."""
        return [d for d in (normalize(x) for x in self.body) if d]

    def header_words(self) -> list[str]:
        return words(self.header)

    def secret(self) -> bool:
        """Whether a line of this section carries a secret (see `redact_line`)."""
        return any(redact_line(x) != x for x in self.body)


def label(key: tuple[str, str]) -> str:
    kind, name = key
    return f"{kind} {name}" if name else kind


def make_section(kind: str, name: str, lines: list[str], indent: str = "    ", newline: str = "\n", header_extra: str = "") -> Section:
    """A new section from its directives (without indentation or line ends)."""
    if kind not in SECTION_TYPES:
        raise ConfigError(f"{kind!r} is not a HAProxy section type ({', '.join(SECTION_TYPES)})")
    if not name and kind not in UNNAMED_OK:
        raise ConfigError(f"a {kind} section needs a name")
    if kind == "global" and name:
        raise ConfigError("the global section has no name")
    if name and (words(name) != [name] or header_of(f"{kind} {name}") != (kind, name)):
        raise ConfigError(f"{name!r} is not a valid section name (one word, no '#', no quotes)")
    head = " ".join(x for x in (kind, name, header_extra) if x)
    body = []
    for line in lines:
        if "\n" in line or "\r" in line:
            raise ConfigError(f"a directive is one line: {line!r}")
        if header_of(line) is not None:
            raise ConfigError(f"{line.strip()!r} would open a new section inside {label((kind, name))}")
        body.append((indent + line.strip() if line.strip() else "") + newline)
    return Section(kind, name, head + newline, body)


# ---------------------------------------------------------------------------
# the file


@dataclass
class Config:
    preamble: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    # -- reading -------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> "Config":
        cfg = cls()
        current: list[str] = cfg.preamble
        for line in split_lines(text):
            head = header_of(line)
            if head is None:
                current.append(line)
                continue
            leading: list[str] = []
            if cfg.sections:
                # column-0 comments right above the header are its title
                while current and current[-1][:1] == "#" and not is_blank(current[-1]):
                    leading.insert(0, current.pop())
            section = Section(head[0], head[1], line, [], leading)
            cfg.sections.append(section)
            current = section.body
        return cfg

    def render(self) -> str:
        return "".join(self.preamble) + "".join(s.text() for s in self.sections)

    def copy(self) -> "Config":
        return copy.deepcopy(self)

    @property
    def newline(self) -> str:
        for line in [*self.preamble, *(x for s in self.sections for x in s.lines())]:
            end = _ending(line)
            if end:
                return end
        return "\n"

    def keys(self) -> list[tuple[str, str]]:
        return [s.key for s in self.sections]

    def labels(self) -> list[str]:
        return [s.label for s in self.sections]

    def _indexes(self, kind: str, name: str = "") -> list[int]:
        return [i for i, s in enumerate(self.sections) if s.key == (kind, name)]

    def index(self, kind: str, name: str = "") -> int | None:
        found = self._indexes(kind, name)
        if len(found) > 1:
            raise ConfigError(f"{label((kind, name))} is defined {len(found)} times; edit the file by hand")
        return found[0] if found else None

    def find(self, kind: str, name: str = "") -> Section | None:
        i = self.index(kind, name)
        return None if i is None else self.sections[i]

    # -- editing (in place; only the named section's lines change) -----------
    def replace(self, new: Section) -> bool:
        """Put `new` in the place of the section with its key.  Its separator
        (the blank lines after it) and, unless `new` brings its own, its
        title comments are kept.  Returns whether the text changed."""
        i = self.index(*new.key)
        if i is None:
            raise ConfigError(f"{new.label} is not in the file")
        old = self.sections[i]
        nl = self.newline
        lines = [_bare(x) + nl for x in [new.header, *new.body[: len(new.body) - len(new.trailing_blanks())]]]
        tail = old.trailing_blanks()
        merged = Section(new.type, new.name, lines[0], lines[1:] + tail, new.leading or old.leading)
        changed = merged.text() != old.text()
        self.sections[i] = merged
        # an edit leaves the file ending in a newline: HAProxy refuses one
        # without ("Missing LF on last line"), even when it was so before
        return self.end_with_newline() or changed

    def end_with_newline(self) -> bool:
        """End the file with a line ending (HAProxy refuses a file whose
        last line has none).  Returns whether it had to be added."""
        nl = self.newline
        if not self.sections:
            if self.preamble and not _ending(self.preamble[-1]):
                self.preamble[-1] += nl
                return True
            return False
        last = self.sections[-1]
        if last.body:
            if not _ending(last.body[-1]):
                last.body[-1] += nl
                return True
        elif not _ending(last.header):
            last.header += nl
            return True
        return False

    def add(self, new: Section, after: tuple[str, str] | None = None, before: tuple[str, str] | None = None) -> None:
        """Insert `new` after / before the named section, or at the end.  A
        blank line separates it from its neighbours."""
        if self._indexes(*new.key):
            raise ConfigError(f"{new.label} is already in the file")
        if after is not None and before is not None:
            raise ConfigError("give after or before, not both")
        if after is not None:
            pos = self.index(*after)
            if pos is None:
                raise ConfigError(f"{label(after)} is not in the file")
            pos += 1
        elif before is not None:
            pos = self.index(*before)
            if pos is None:
                raise ConfigError(f"{label(before)} is not in the file")
        else:
            pos = len(self.sections)
        nl = self.newline
        prev = self.sections[pos - 1].body if pos else self.preamble
        if prev and not _ending(prev[-1]):
            prev[-1] += nl  # a file without its final newline
        prev_lines = self.sections[pos - 1].lines() if pos else self.preamble
        leading = list(new.leading)
        if prev_lines and not is_blank(prev_lines[-1]):
            leading.insert(0, nl)
        body = [_bare(x) + nl for x in new.body[: len(new.body) - len(new.trailing_blanks())]]
        if pos < len(self.sections):
            body.append(nl)
        leading = [_bare(x) + nl for x in leading]
        self.sections.insert(pos, Section(new.type, new.name, _bare(new.header) + nl, body, leading))
        self.end_with_newline()

    def remove(self, kind: str, name: str = "") -> bool:
        """Remove a section with its title comments; False if it was not there."""
        i = self.index(kind, name)
        if i is None:
            return False
        old = self.sections.pop(i)
        if i == len(self.sections):
            # it was the last one: what is now last ends as it ended
            tail = self.sections[-1].body if self.sections else self.preamble
            while tail and is_blank(tail[-1]):
                tail.pop()
            tail.extend(old.trailing_blanks())
        self.end_with_newline()
        return True

    def set(self, new: Section, after: tuple[str, str] | None = None) -> bool:
        """Replace or add; True if the text changed."""
        if self.index(*new.key) is None:
            self.add(new, after=after)
            return True
        return self.replace(new)


def _terminated(line: str, nl: str) -> str:
    return line if _ending(line) else line + nl


def _last(lines: list[str]) -> str:
    return lines[-1] if lines else ""


def parse(text: str) -> Config:
    return Config.parse(text)


# ---------------------------------------------------------------------------
# a whole managed file


@dataclass
class MergeResult:
    config: Config
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    preamble_changed: bool = False

    @property
    def text(self) -> str:
        return self.config.render()

    def sections(self) -> dict[str, str]:
        """{section label: added | changed | removed | kept}."""
        out = {}
        for what in ("added", "changed", "removed", "kept"):
            for name in getattr(self, what):
                out[name] = what
        return out


UNMANAGED_CHOICES = ("keep", "remove")


def merge(live: Config, desired: Config, unmanaged: str) -> MergeResult:
    """The file HAProxy should get: `desired`'s sections, in its order and
    with its preamble, and the sections of `live` that `desired` does not
    have, kept at their place (after the managed section they followed) or
    removed, as `unmanaged` says (``keep`` or ``remove``; no default: the
    caller decides).  Sections are separated by one blank line.

    When `live` was rendered like `desired` (the usual case), the result is
    exactly `desired`'s text and only changed sections differ from `live`.
    """
    if unmanaged not in UNMANAGED_CHOICES:
        raise ConfigError(f"unmanaged must be one of {', '.join(UNMANAGED_CHOICES)}, not {unmanaged!r}")
    if len(set(desired.keys())) != len(desired.keys()):
        dups = sorted({label(k) for k in desired.keys() if desired.keys().count(k) > 1})
        raise ConfigError(f"the managed config defines {', '.join(dups)} more than once")
    owned = set(desired.keys())
    live_first = {}
    for s in live.sections:
        live_first.setdefault(s.key, s)

    result = MergeResult(Config(preamble=list(desired.preamble)))
    result.preamble_changed = "".join(live.preamble) != "".join(desired.preamble)
    # unmanaged sections, anchored to the managed section above them in live
    anchored: dict[tuple[str, str] | None, list[Section]] = {}
    anchor = None
    for s in live.sections:
        if s.key in owned and live_first[s.key] is s:
            anchor = s.key
            continue
        if unmanaged == "keep":
            anchored.setdefault(anchor, []).append(s)
            result.kept.append(s.label)
        else:
            result.removed.append(s.label)

    out: list[Section] = []
    out += anchored.get(None, [])
    for d in desired.sections:
        old = live_first.get(d.key)
        if old is None:
            result.added.append(d.label)
        elif old.content() != d.content():
            result.changed.append(d.label)
        out.append(d)
        out += anchored.get(d.key, [])

    nl = desired.newline
    cfg = result.config
    for n, s in enumerate(out):
        body = s.body[: len(s.body) - len(s.trailing_blanks())]
        body = [_terminated(x, nl) for x in body]
        if n < len(out) - 1:
            body.append(nl)
        leading = list(s.leading)
        while leading and is_blank(leading[0]):
            leading.pop(0)  # the separator is the blank line added above
        cfg.sections.append(Section(s.type, s.name, _terminated(s.header, nl), body, leading))
    if cfg.sections and cfg.preamble and not _ending(cfg.preamble[-1]):
        cfg.preamble[-1] += nl
    return result


# ---------------------------------------------------------------------------
# secrets and diffs

_SECRET_LINE = re.compile(r"^(\s*user\s+\S+\s+(?:password|insecure-password)\s+)(\S+)(.*)$", re.S)
_STATS_AUTH = re.compile(r"^(\s*stats\s+auth\s+[^:\s]+:)(\S+)(.*)$", re.S)


def redact_line(line: str) -> str:
    """The line with a password or hash replaced by <redacted>
    (userlist ``user X password H``, ``insecure-password``, ``stats auth U:P``)."""
    for rx in (_SECRET_LINE, _STATS_AUTH):
        m = rx.match(line)
        if m:
            return m.group(1) + REDACTED + m.group(3)
    return line


def redact(text: str) -> str:
    return "".join(redact_line(x) for x in split_lines(text))


def diff(old: str, new: str, path: str = "haproxy.cfg", secrets: bool = False) -> str:
    """A unified diff; secrets are redacted unless `secrets=True`."""
    if not secrets:
        old, new = redact(old), redact(new)
    return "".join(difflib.unified_diff(split_lines(old), split_lines(new), fromfile=path, tofile=path, n=2))


# ---------------------------------------------------------------------------
# the generation marker: which file the running HAProxy loaded
#
# A file written by the haproxy_section states carries, as the last directive
# of its global section, ``description lb-config-sha256=<hex>``: the sha256
# of the file without that line.  HAProxy reports its global description in
# ``show info`` (``description: ...``), so the running worker says which file
# it parsed; a reload that failed leaves the old workers, and the old value.
# The hash is of the whole file (password hashes included): it reveals
# nothing a reader of ``show info`` (the admin socket) could not read anyway.

MARKER_KEYWORD = "description"
MARKER_PREFIX = "lb-config-sha256="
_MARKER_VALUE = re.compile(r"lb-config-sha256=([0-9a-f]{64})")


def _is_marker(line: str) -> bool:
    w = words(line)
    return len(w) == 2 and w[0] == MARKER_KEYWORD and w[1].startswith(MARKER_PREFIX)


def _last_global(cfg: Config) -> Section | None:
    # HAProxy reads every global section in order: the last description wins
    found = [s for s in cfg.sections if s.type == "global"]
    return found[-1] if found else None


def unstamp(text: str) -> str:
    """The text without the generation marker (the global sections'
    ``description lb-config-sha256=...`` lines)."""
    cfg = parse(text)
    for g in cfg.sections:
        if g.type == "global":
            g.body = [x for x in g.body if not _is_marker(x)]
    return cfg.render()


def generation(text: str) -> str:
    """The sha256 of the text without its marker: what the marker of this
    file must say."""
    return hashlib.sha256(unstamp(text).encode()).hexdigest()


def stamp(text: str) -> str:
    """The text with its marker set to `generation(text)`, as the last
    directive of the (last) global section.  Unchanged without a global
    section.  ``stamp(stamp(t)) == stamp(t)``."""
    cfg = parse(unstamp(text))
    g = _last_global(cfg)
    if g is None:
        return text
    tail = g.trailing_blanks()
    body = g.body[: len(g.body) - len(tail)]
    nl = cfg.newline
    if body and not _ending(body[-1]):
        body[-1] += nl
    elif not body and not _ending(g.header):
        g.header += nl
    indent = next((x[: len(x) - len(x.lstrip())] for x in body if x.strip() and not is_comment(x)), "    ")
    placeholder = MARKER_PREFIX + "0" * 64
    g.body = [*body, f"{indent}{MARKER_KEYWORD} {placeholder}{nl}", *tail]
    rendered = cfg.render()
    return rendered.replace(placeholder, MARKER_PREFIX + generation(rendered), 1)


def marker(text: str) -> str | None:
    """The hash the file's marker names (None without one)."""
    g = _last_global(parse(text))
    found = [words(x)[1] for x in (g.body if g else []) if _is_marker(x)]
    m = _MARKER_VALUE.fullmatch(found[-1]) if found else None
    return m.group(1) if m else None


def file_generation(text: str | None) -> str | None:
    """The generation of a file: its marker when the marker matches the
    content (None without a marker, or with one a hand edit made stale)."""
    if text is None:
        return None
    m = marker(text)
    return m if m is not None and m == generation(text) else None


def loaded_generation(show_info: str) -> str | None:
    """The generation a running HAProxy reports: the marker in the
    ``description:`` line of ``show info`` (None without one)."""
    for line in show_info.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "description":
            m = _MARKER_VALUE.fullmatch(value.strip())
            return m.group(1) if m else None
    return None
