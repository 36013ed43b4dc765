"""One question to many nodes, answered within a deadline: the ``lb``
runner's and the ``lb_recorder`` engine's round trip.

Salt's ``LocalClient.cmd`` waits its ``timeout`` for the returns, then asks
the silent minions whether they still run the job (``saltutil.find_job``)
and waits ``gather_job_timeout`` for that: with dead minions, the round
took 16 s where 10 were asked for.  Here the returns are read as they come
(``cmd_iter_no_block``) and the wait ends when every node answered or at
the deadline, whichever is first.  No other Salt: the client is handed in.
"""

from __future__ import annotations

import time


def ask(client, nodes, fun, timeout: float, accepted_keys, arg=()) -> dict:
    """{node: its return, or a string saying why there is none}: one job to
    all ``nodes`` (a list target), ``fun`` with the arguments ``arg``, returns collected for at most
    ``timeout`` seconds.  ``accepted_keys()`` names the minions the master
    has a key of, asked only when some node did not answer: a node without
    one is "unknown minion (no accepted key)", the others "no answer"."""
    nodes = list(nodes)
    if not nodes:
        return {}
    deadline = time.monotonic() + float(timeout)
    got: dict = {}
    it = client.cmd_iter_no_block(nodes, fun, arg=list(arg), tgt_type="list", timeout=float(timeout))
    try:
        for item in it:
            for node, r in (item or {}).items():
                if node in nodes and isinstance(r, dict) and "ret" in r:
                    got[node] = r["ret"]
            if len(got) >= len(nodes) or time.monotonic() >= deadline:
                break
    finally:
        it.close()
    keys = set(accepted_keys()) if len(got) < len(nodes) else set()
    return {n: got[n] if n in got else ("no answer" if n in keys else "unknown minion (no accepted key)") for n in nodes}
