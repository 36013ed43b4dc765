"""The layout docs/design.md describes, held by reading the code (ast):
the topology is loaded and validated by `lb` alone (`lb.model`, and the
salt-ssh wrapper that is its other half), never by another Salt module."""

import ast
from pathlib import Path

from tests.support import REPO

READERS = {"load", "load_file", "check"}


def calls(path: Path) -> list[int]:
    """The lines where `path` calls lb_topology.load / load_file / check."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        f = getattr(node, "func", None)
        if isinstance(f, ast.Attribute) and f.attr in READERS and isinstance(f.value, ast.Name) and f.value.id == "lb_topology":
            out.append(node.lineno)
    return out


# the one owner, and where the topology is still read elsewhere (with why)
OWNERS = {"_modules/lb.py", "_wrapper/lb.py"}
NOT_YET = {
    # the master's runner: the first cached minion pillar that validates
    # (docs/design.md, "Not yet"); lb_bookkeeping holds that lookup
    "_runners/lb.py",
    "_utils/lb_bookkeeping.py",
}


def test_only_lb_loads_or_validates_the_topology():
    offenders = []
    for room in ("_modules", "_states", "_beacons", "_engines", "_grains", "_runners", "_wrapper", "_utils"):
        for path in sorted(Path(REPO, room).glob("*.py")):
            rel = f"{room}/{path.name}"
            if rel in OWNERS or rel in NOT_YET or rel == "_utils/lb_topology.py":
                continue
            offenders += [f"{rel}:{n}" for n in calls(path)]
    assert offenders == [], "ask __salt__['lb.model'] instead:\n" + "\n".join(offenders)


def test_the_exceptions_still_need_their_exception():
    # a file listed above that no longer reads the topology leaves the list
    for rel in NOT_YET:
        assert calls(Path(REPO, rel)), f"{rel} no longer loads the topology: take it off NOT_YET"
