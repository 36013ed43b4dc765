"""The shape of this project's state functions over an execution function
that takes ``test=True``: ask it what would change first; in test mode report
that and touch nothing; otherwise run it and report what it changed.  A
CommandExecutionError becomes a failed state with its message.  Pure: the
caller passes the execution function and whether Salt runs in test mode."""

from __future__ import annotations

from collections.abc import Callable

from salt.exceptions import CommandExecutionError


def ret(name: str) -> dict:
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def checked(name: str, run: Callable[..., dict], test_mode: bool, would: str, done: str) -> dict:
    """`run(test=True)` (the question) and `run()` (the change) each return
    {"changes", "comment"}."""
    out = ret(name)
    try:
        check = run(test=True)
        if not check["changes"]:
            out["comment"] = check["comment"]
            return out
        if test_mode:
            out.update(result=None, changes=check["changes"], comment=f"{would}: {check['comment']}")
            return out
        res = run()
        # a change made, then a step that failed (e.g. a file replaced, its
        # daemon not reloaded): result False with the changes
        out.update(result=res.get("result", True), changes=res["changes"], comment=f"{done}: {res['comment']}")
    except CommandExecutionError as exc:
        out.update(result=False, comment=str(exc))
    return out
