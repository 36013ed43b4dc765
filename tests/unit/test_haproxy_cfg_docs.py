"""Every public function of the haproxy_cfg module (its three files: the
configuration, the process, the runtime API) has a docstring with a CLI
Example (what salt-extension-copier's pre-commit hook checks), and no name
is defined in two of its files (Salt's loader would keep the first)."""

import ast
import os

from tests.support import REPO

FILES = ("haproxy_cfg.py", "haproxy_cfg_process.py", "haproxy_cfg_runtime.py")


def _public(name):
    tree = ast.parse(open(os.path.join(REPO, "_modules", name), encoding="utf-8").read())
    return [n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]


def test_every_public_function_has_a_cli_example():
    public = [n for name in FILES for n in _public(name)]
    assert len(public) > 20
    missing = [
        n.name for n in public if "CLI Example:" not in (ast.get_docstring(n) or "") or f"haproxy_cfg.{n.name}" not in ast.get_docstring(n)
    ]
    assert missing == []


def test_the_three_files_are_one_module_with_no_name_twice():
    names = [n.name for name in FILES for n in _public(name)]
    assert sorted(set(names)) == sorted(names)
    for name in FILES:
        text = open(os.path.join(REPO, "_modules", name), encoding="utf-8").read()
        assert '__virtualname__ = "haproxy_cfg"' in text
