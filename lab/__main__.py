"""python -m lab up [--galera6] | down | status | exec HOST -- CMD..."""

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build the lab and converge it (again, if it is up)")
    up.add_argument("--galera6", action="store_true", help="every galera pool's servers (db-1..6), not only the first")
    sub.add_parser("down", help="stop every daemon by pid, remove namespaces, bridges and veths")
    sub.add_parser("status", help="hosts, addresses and daemons with pids")
    ex = sub.add_parser("exec", help="run a command in a lab host: exec lb-a -- ip addr")
    ex.add_argument("host")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    sup = sub.add_parser("_supervise", help=argparse.SUPPRESS)
    sup.add_argument("--galera6", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "_supervise":
        from lab import supervisor

        return supervisor.main(args.galera6)
    from lab import control

    if args.command == "up":
        return control.up(args.galera6)
    if args.command == "down":
        return control.down()
    if args.command == "status":
        return control.status()
    return control.exec_in(args.host, args.cmd)


if __name__ == "__main__":
    sys.exit(main())
