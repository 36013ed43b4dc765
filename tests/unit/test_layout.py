"""The layout docs/design.md describes, held by reading the code (ast):
the topology is loaded and validated by `lb` alone (`lb.model`, and the
salt-ssh wrapper that is its other half), never by another Salt module;
and the programs are files of the state tree, not strings or modules in
`_utils/`."""

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


# the owners: on a minion `lb` (and the salt-ssh wrapper, its other half);
# on the master lb_bookkeeping.site_model, each pair from its own nodes'
# pillar, for the runner, the engine and the reactor
OWNERS = {"_modules/lb.py", "_wrapper/lb.py", "_utils/lb_bookkeeping.py"}


def test_only_lb_loads_or_validates_the_topology():
    offenders = []
    for room in ("_modules", "_states", "_beacons", "_engines", "_grains", "_runners", "_wrapper", "_utils"):
        for path in sorted(Path(REPO, room).glob("*.py")):
            rel = f"{room}/{path.name}"
            if rel in OWNERS or rel == "_utils/lb_topology.py":
                continue
            offenders += [f"{rel}:{n}" for n in calls(path)]
    assert offenders == [], "ask __salt__['lb.model'] (the master: lb_bookkeeping.site_model) instead:\n" + "\n".join(offenders)


def test_every_owner_reads_the_topology():
    # an owner that no longer reads the topology leaves the list
    for rel in OWNERS:
        assert calls(Path(REPO, rel)), f"{rel} no longer loads the topology: take it off OWNERS"


# ---------------------------------------------------------------------------
# Programs are files of the state tree (salt/<feature>/files/), installed by
# file.managed, not Python strings in _utils/ (docs/design.md, "The rooms").


def program_strings(path: Path) -> list[str]:
    """The functions (or "<module>") of `path` that hold a string, or an
    f-string, or a list of lines, starting with a `#!` line: a program."""
    out = []

    def shebang(node) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("#!/")

    def starts_a_program(node) -> bool:
        # a text of several lines, or a list of lines, whose first is `#!/...`
        # (a bare "#!/" compared with is no program)
        if shebang(node):
            return "\n" in node.value
        if isinstance(node, ast.JoinedStr) and node.values:
            return shebang(node.values[0])
        if isinstance(node, ast.List) and len(node.elts) > 1:
            return shebang(node.elts[0])
        return False

    tree = ast.parse(path.read_text())
    scopes = [("<module>", tree)] + [(n.name, n) for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    for name, scope in scopes:
        nodes = (
            ast.walk(scope)
            if name != "<module>"
            else (n for stmt in tree.body if not isinstance(stmt, ast.FunctionDef) for n in ast.walk(stmt))
        )
        if any(starts_a_program(n) for n in nodes):
            out.append(name)
    return out


def test_no_utils_module_holds_a_program_in_a_string():
    found = {(f"_utils/{p.name}", f) for p in sorted(Path(REPO, "_utils").glob("*.py")) for f in program_strings(p)}
    assert found == set(), "make it a file under salt/<feature>/files/"


def test_no_utils_module_is_a_program():
    """`_utils/` holds pure logic: no module there is run as a program (a #!
    line, or a `__main__` block).  Programs are files of the state tree."""
    found = []
    for p in sorted(Path(REPO, "_utils").glob("*.py")):
        text = p.read_text()
        tree = ast.parse(text)
        main_block = any(
            isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) and "__name__" in ast.unparse(node.test) for node in tree.body
        )
        if text.startswith("#!") or main_block:
            found.append(f"_utils/{p.name}")
    assert found == [], "make it a file under salt/<feature>/files/"
