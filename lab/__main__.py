"""python -m lab up [--galera6] [--booted] | down | status | check | drill [--quick] | exec HOST -- CMD... | reboot HOST..."""

import argparse
import os
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build the lab and converge it (again, if it is up)")
    up.add_argument("--galera6", action="store_true", help="every galera pool's servers (db-1..6), not only the first")
    up.add_argument(
        "--booted", action="store_true", help="the load balancers as Debian hosts booted by systemd under nspawn (lab/lbhosts.py)"
    )
    up.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="wait this long for another clone's lab on this machine to go"
    )
    sub.add_parser("down", help="stop every daemon by pid, remove namespaces, bridges and veths")
    sub.add_parser("status", help="hosts, addresses and daemons with pids")
    sub.add_parser("check", help="the end-to-end checks from the client host, and the pair's status")
    dr = sub.add_parser("drill", help="cut, maintenance, reload, kill under client load: timeline and PNG")
    dr.add_argument("--quick", action="store_true", help="shorter settling times")
    dr.add_argument("--phases", help="comma-separated subset of: cut,maint,reload,kill (default: all, in that order)")
    dr.add_argument("--json", dest="json_out", help="also write the report as JSON to this file")
    ex = sub.add_parser("exec", help="run a command in a lab host: exec lb-a -- ip addr")
    ex.add_argument("host")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    rb = sub.add_parser("reboot", help="power-cycle booted hosts (up --booted) together; returns once they have booted")
    rb.add_argument("hosts", nargs="+")
    sup = sub.add_parser("_supervise", help=argparse.SUPPRESS)
    sup.add_argument("--galera6", action="store_true")
    sup.add_argument("--booted", action="store_true")
    sup.add_argument("--lock-fd", type=int, default=None)
    args = parser.parse_args(argv)

    if args.command == "_supervise":
        from lab import supervisor

        return supervisor.main(args.galera6, args.lock_fd, args.booted)
    from lab import control

    if args.command == "up":
        # converge (control), then check the path end to end (e2e): control
        # does not import e2e, which drives the lab through control
        t0 = time.monotonic()
        rc = control.up(args.galera6, args.wait, args.booted)
        if rc != 0:
            return rc
        from lab import e2e

        return e2e.after_up(t0)
    if args.command == "down":
        return control.down()
    if args.command == "reboot":
        return control.reboot(args.hosts)
    if args.command == "status":
        return control.status()
    if args.command == "check":
        from lab import e2e

        return e2e.main()
    if args.command == "drill":
        from lab import drill

        return drill.main(quick=args.quick, phases=args.phases, json_out=args.json_out)
    return control.exec_in(args.host, args.cmd)


if __name__ == "__main__":
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # `python -m lab status | head`: the reader left; no traceback for that
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
