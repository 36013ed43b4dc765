#!/usr/bin/env python3
"""Write .salt/local/minion: the masterless config the Saltfile points salt-call at.

Absolute paths of this checkout, so `salt-call` run from the repo root uses
the repo's own state tree, custom modules and pillar, and keeps its cache and
logs under .salt/ (nothing outside the repo is touched).
"""

import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config(root: str) -> dict:
    state = os.path.join(root, ".salt", "local-state")
    return {
        "id": "lb-a",
        "file_client": "local",
        "root_dir": state,
        "cachedir": os.path.join(state, "cache"),
        "pki_dir": os.path.join(state, "pki"),
        "sock_dir": os.path.join(state, "sock"),
        "pidfile": os.path.join(state, "salt-call.pid"),
        "log_file": os.path.join(state, "log"),
        "log_level_logfile": "warning",
        "file_roots": {"base": [os.path.join(root, "salt")]},
        "pillar_roots": {"base": [os.path.join(root, "pillar", "seed")]},
        "module_dirs": [os.path.join(root, "_modules")],
        "states_dirs": [os.path.join(root, "_states")],
        "grains_dirs": [os.path.join(root, "_grains")],
        "utils_dirs": [os.path.join(root, "_utils")],
        "beacons_dirs": [os.path.join(root, "_beacons")],
    }


def main() -> int:
    root = sys.argv[1] if len(sys.argv) > 1 else ROOT
    target = os.path.join(root, ".salt", "local")
    os.makedirs(target, exist_ok=True)
    path = os.path.join(target, "minion")
    text = "# Written by tools/local-config.py; do not edit.\n" + yaml.safe_dump(config(root), sort_keys=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
