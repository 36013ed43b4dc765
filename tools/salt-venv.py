#!/usr/bin/env python3
"""Install an older Salt release into a venv of its own: `make test SALT=3006`.

    .venv-salt3006/bin/python tools/salt-venv.py 3006
    python3 tools/salt-venv.py --check 3006     # prints 3006.30, or fails for an unknown series

The default venv (.venv) is pyproject.toml's: `pip install -e '.[test]'`
with salt==3008.4.  This script is for the other supported series (issue 19,
docs/install.md "Salt versions"): it installs the release SALT_RELEASES
names, then Salt's own dependencies as that release declares them (with
RELAXED's floors lowered), then pyproject.toml's other dependencies and test
extras, and the project itself without its dependencies (whose salt==3008.4
pin would pull 3008 back in).  The venv must exist; the Makefile makes it.

SALT_RELEASES is the one place the series map to releases.
"""

import os
import subprocess
import sys
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# series -> the exact release tested (docs/verification.md, "Salt versions")
SALT_RELEASES = {
    "3006": "3006.30",
    "3007": "3007.17",
}

# Floors in a release's own requirements that PyPI cannot meet, and what is
# used instead.  3006.30 and 3007.17 ask for certifi>=2026.10.23 (a newer
# Mozilla CA bundle) and no such certifi is published: the newest is
# 2026.10.19.post1, the one 3008.4 takes.  The tests make no TLS connection
# that would use the bundle.  pip then reports this one conflict: expected.
RELAXED = {
    "certifi": "certifi>=2026.10.19",
}

# Pins on top, for what an older Salt needs on Python 3.11 (none so far).
EXTRA_PINS: dict[str, list[str]] = {
    "3006": [],
    "3007": [],
}


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "-q", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def project_requirements() -> list[str]:
    """pyproject.toml's dependencies and test extras, without its salt pin."""
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as fh:
        project = tomllib.load(fh)["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["test"]
    return [r for r in reqs if not r.replace(" ", "").lower().startswith("salt==")]


def salt_requirements() -> list[str]:
    """The installed Salt's own requirements for this interpreter, RELAXED applied."""
    import importlib.metadata

    from packaging.requirements import Requirement

    out = []
    for text in importlib.metadata.requires("salt") or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        req.marker = None
        name = req.name.lower()
        out.append(RELAXED.get(name, str(req)))
    return out


def main() -> int:
    args = sys.argv[1:]
    check = args[:1] == ["--check"]
    if check:
        args = args[1:]
    if len(args) != 1 or args[0] not in SALT_RELEASES:
        known = ", ".join(f"{k} ({v})" for k, v in SALT_RELEASES.items())
        print(f"usage: {sys.argv[0]} [--check] SERIES   (known: {known}; 3008 is .venv, pyproject.toml's pin)", file=sys.stderr)
        return 2
    series = args[0]
    release = SALT_RELEASES[series]
    if check:
        print(release)
        return 0
    pip("--upgrade", "pip", "packaging")
    pip("--no-deps", f"salt=={release}")
    pip(*salt_requirements(), *project_requirements(), *EXTRA_PINS[series])
    pip("--no-deps", "-e", REPO)
    import importlib.metadata

    installed = importlib.metadata.version("salt")
    if installed != release:
        print(f"salt-venv: salt {installed} installed, {release} wanted", file=sys.stderr)
        return 1
    print(f"salt-venv: salt {installed} in {sys.prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
