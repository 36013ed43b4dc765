#!/usr/bin/env python3
"""Validate a topology and preview every node, through `salt-call` (the
product's own interface), as a pillar repository's CI would.

    .venv/bin/python tools/check-topology.py [TOPOLOGY] [--os Debian,FreeBSD] [--show PATH]

Exit 0 when the topology is valid, 1 with every error and its pillar path
otherwise.  Secrets stay redacted.
"""

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The salt-call of the venv running this script (.venv, or .venv-salt3006 under
# `make ... SALT=3006`); .venv's when run by a Python outside a venv.
SALT_CALL = os.path.join(os.path.dirname(sys.executable), "salt-call")
if sys.prefix == sys.base_prefix or not os.path.exists(SALT_CALL):
    SALT_CALL = os.path.join(REPO, ".venv", "bin", "salt-call")


def salt_call(*args):
    r = subprocess.run([SALT_CALL, "--out=json", *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit(r.returncode or 1)
    return json.loads(r.stdout)["local"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("topology", nargs="?", default=os.path.join("pillar", "lab", "lb.sls"))
    ap.add_argument("--os", default="Debian,FreeBSD")
    ap.add_argument("--show", help="print this file's rendered content for every node")
    args = ap.parse_args()
    topo = f"topology={args.topology}"
    report = salt_call("lb.validate", topo)
    for w in report["warnings"]:
        print(f"warning: {w['path']}: {w['message']}")
    if not report["valid"]:
        for e in report["errors"]:
            print(f"error: {e['path']}: {e['message']}")
        print(f"{args.topology}: INVALID ({len(report['errors'])} errors)")
        return 1
    print(f"{args.topology}: valid")
    sys.path.insert(0, os.path.join(REPO, "_utils"))
    import lb_topology

    nodes = [n for pair in lb_topology.load_file(args.topology)["pairs"].values() for n in pair["nodes"]]
    for node in nodes:
        for osf in args.os.split(","):
            files = salt_call("lb.preview", f"node={node}", f"os_family={osf}", topo)
            # lb.preview: {path: {"content", "mode", "user", "group", "block", "state"}}
            print(
                f"  {node} ({osf}): "
                + ", ".join(f"{p} ({f['content'].count(chr(10))} lines, {f['mode']}, {f['state']})" for p, f in files.items())
            )
            if args.show and args.show in files:
                print(files[args.show]["content"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
