"""The one shape of this project's state functions, as Salt's own states
have it (``host.present`` over ``hosts``): the execution module offers a
read-only function that says what would change (``<op>_pending``) and one
that changes it (``<op>``); the state asks the first, reports it in test
mode and touches nothing, and otherwise runs the second and reports what it
changed.  A CommandExecutionError becomes a failed state with its message.
Pure: the caller passes the two functions and whether Salt runs in test
mode."""

from __future__ import annotations

from collections.abc import Callable

from salt.exceptions import CommandExecutionError


def ret(name: str) -> dict:
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def diff_and_apply(name: str, pending: Callable[[], dict], apply: Callable[[], dict], test_mode: bool, would: str, done: str) -> dict:
    """`pending()` (the question: read-only) and `apply()` (the change) each
    return {"changes", "comment"}; `apply()` may add "result": False (a
    change made, then a step that failed)."""
    out = ret(name)
    try:
        check = pending()
        if not check["changes"]:
            out["comment"] = check["comment"]
            return out
        if test_mode:
            out.update(result=None, changes=check["changes"], comment=f"{would}: {check['comment']}")
            return out
        res = apply()
        # a change made, then a step that failed (e.g. a file replaced, its
        # daemon not reloaded): result False with the changes
        out.update(result=res.get("result", True), changes=res["changes"], comment=f"{done}: {res['comment']}")
    except CommandExecutionError as exc:
        out.update(result=False, comment=str(exc))
    return out
