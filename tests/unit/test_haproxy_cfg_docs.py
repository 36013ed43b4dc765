"""Every public function of the haproxy_cfg module has a docstring with a
CLI Example (what salt-extension-copier's pre-commit hook checks)."""

import ast
import os

from tests.support import REPO


def test_every_public_function_has_a_cli_example():
    tree = ast.parse(open(os.path.join(REPO, "_modules", "haproxy_cfg.py"), encoding="utf-8").read())
    public = [n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    assert len(public) > 20
    missing = [
        n.name for n in public if "CLI Example:" not in (ast.get_docstring(n) or "") or f"haproxy_cfg.{n.name}" not in ast.get_docstring(n)
    ]
    assert missing == []
