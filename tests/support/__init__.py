"""What the test files share (paths, a masterless minion's config, the
`lb` execution module for unit tests), imported as `tests.support`:
tests/conftest.py holds the fixtures and the session's setup only."""

import importlib
import importlib.util
import os
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED_PILLAR = os.path.join(REPO, "pillar", "seed", "lb.sls")
LAB_PILLAR = os.path.join(REPO, "pillar", "lab", "lb.sls")
SEED_HOWTO = os.path.join(REPO, "tests", "fixtures", "seed-howto.md")
CARP_FILES = os.path.join(REPO, "salt", "carp", "files")
PROBE_PROGRAM = os.path.join(REPO, "salt", "clustercheck", "files", "clustercheck.py")


def carp_program(name: str) -> str:
    """The text salt/carp installs as the program `name` (lb_render_linux.PROGRAM_FILES)."""
    import lb_render_linux

    with open(os.path.join(CARP_FILES, lb_render_linux.PROGRAM_FILES[name]), encoding="utf-8") as fh:
        return fh.read()


def install_carp_programs(script_dir, names, edit=None) -> None:
    """Install the programs `names` into `script_dir` as salt/carp does
    (mode 0755), each text passed through `edit` first when given (a test's
    stand-ins for /sbin/ip and the like)."""
    os.makedirs(str(script_dir), exist_ok=True)
    for name in names:
        path = os.path.join(str(script_dir), name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(edit(carp_program(name)) if edit else carp_program(name))
        os.chmod(path, 0o755)


def probe_module():
    """The Galera probe program (salt/clustercheck/files/clustercheck.py) as a
    module: its few template lines are plain Python strings and a comment."""
    spec = importlib.util.spec_from_file_location("clustercheck_program", PROBE_PROGRAM)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def render_state_file(source: str, context: dict) -> str:
    """A file of this repo's state tree (`salt://...`) rendered by Salt's own
    Jinja renderer with `context`, as file.managed's `template: jinja` does."""
    import salt.config
    import salt.utils.templates

    path = os.path.join(REPO, "salt", source.removeprefix("salt://"))
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    opts = dict(salt.config.DEFAULT_MINION_OPTS, file_client="local", file_roots={"base": [os.path.join(REPO, "salt")]})
    out = salt.utils.templates.JINJA(
        text, from_str=True, to_str=True, context=context, saltenv="base", opts=opts, grains={}, pillar={}, salt={}
    )
    if not out["result"]:
        raise RuntimeError(f"{source}: {out['data']}")
    return out["data"]


def reach(funcs: dict, roots, names, writers) -> tuple[set, set]:
    """What the functions `roots` of one module reach, following the calls
    `names(fn)` yields among `funcs` ({name: ast.FunctionDef}), and which of
    the names they use are in `writers`: (reached, {"fn: writer"})."""
    reached, todo, found = set(), list(roots), set()
    while todo:
        fn = todo.pop()
        if fn in reached:
            continue
        reached.add(fn)
        for used in names(funcs[fn]):
            if used in funcs and used != fn:
                todo.append(used)
            if used in writers:
                found.add(f"{fn}: {used}")
    return reached, found


def private_minion(root, state: str = "state", **options) -> str:
    """The path of a masterless minion config of this repo (tools/local-config.py)
    written as <root>/minion, with Salt's own state under <root>/<state> and
    `options` on top (for Salt's loaders in functional tests)."""
    sys.path.insert(0, os.path.join(REPO, "tools"))
    conf = importlib.import_module("local-config").config(REPO)
    base = os.path.join(str(root), state)
    conf.update(
        root_dir=base,
        cachedir=os.path.join(base, "cache"),
        pki_dir=os.path.join(base, "pki"),
        sock_dir=os.path.join(base, "sock"),
        log_file=os.path.join(base, "log"),
    )
    conf.update(options)
    path = os.path.join(str(root), "minion")
    with open(path, "w") as fh:
        fh.write(yaml.safe_dump(conf))
    return path


def lb_execution_module():
    """_modules/lb.py, imported as `lb_execmod` (the name `lb` is also the
    runner's and the salt-ssh wrapper's).  The product's modules get the
    topology from ``__salt__["lb.model"]``/``["lb.node"]``: a unit test that
    loads one with ``configure_loader_modules`` loads this beside it."""
    if "lb_execmod" not in sys.modules:
        spec = importlib.util.spec_from_file_location("lb_execmod", os.path.join(REPO, "_modules", "lb.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules["lb_execmod"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["lb_execmod"]


def with_lb_module(loader_modules: dict, salt: dict, pillar: dict, minion_id: str, grains: dict) -> dict:
    """`loader_modules` (configure_loader_modules' value) with the `lb`
    execution module beside it, and its lb.model/lb.node in `salt`."""
    mod = lb_execution_module()
    salt.update({"lb.model": mod.model, "lb.node": mod.node})
    out = dict(loader_modules)
    out[mod] = {"__opts__": {"id": minion_id}, "__pillar__": pillar, "__grains__": grains, "__context__": {}}
    return out
