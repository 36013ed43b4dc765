"""
States for the Galera health probe: the maintenance switch and the probe's
MySQL account.  They compare and delegate; the ``clustercheck`` execution
module does the I/O.

.. code-block:: yaml

    # take db-1 out of rotation before maintenance
    galera-maintenance:
      clustercheck.drained:
        - reason: kernel upgrade

    # and put it back after
    galera-back:
      clustercheck.undrained

    # the password is read from the pillar when the state runs: the SLS
    # (and so state.show_sls) never holds it
    clustercheck-account:
      clustercheck.account_present:
        - name: clustercheck

    clustercheck-options:
      clustercheck.option_file:
        - name: /etc/clustercheck/clustercheck.cnf
        - user: clustercheck
        - group: clustercheck
"""

from salt.exceptions import CommandExecutionError

import lb_fresh
import lb_state

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

__virtualname__ = "clustercheck"


def __virtual__():
    if "clustercheck.is_drained" in __salt__:
        return __virtualname__
    return (False, "clustercheck: the clustercheck execution module is not available")


def drained(name, reason=None, maintenance_file=None):
    """
    The maintenance file exists: the probe answers 503 and HAProxy sends
    this server no new connections.

    name
        A label for the state (the state ID).

    reason
        Kept in the maintenance file and shown in the probe's 503 body.

    maintenance_file
        Default: the pillar's ``galera_probe:maintenance_file``.
    """
    ret = lb_state.ret(name)
    try:
        if __salt__["clustercheck.is_drained"](maintenance_file=maintenance_file):
            ret["comment"] = "The server is already drained"
            return ret
        ret["changes"] = {"drained": {"old": False, "new": True}}
        if __opts__["test"]:
            ret["result"] = None
            ret["comment"] = "The server would be drained (maintenance file created)"
            return ret
        out = __salt__["clustercheck.drain"](reason=reason, maintenance_file=maintenance_file)
        ret["comment"] = f"The server is drained ({out['maintenance_file']})"
    except CommandExecutionError as exc:
        ret["changes"] = {}
        ret["result"] = False
        ret["comment"] = str(exc)
    return ret


def undrained(name, maintenance_file=None):
    """
    No maintenance file: the probe answers from the server's state again and
    HAProxy puts the server back after ``rise`` good checks.
    """
    ret = lb_state.ret(name)
    try:
        if not __salt__["clustercheck.is_drained"](maintenance_file=maintenance_file):
            ret["comment"] = "The server is not drained"
            return ret
        ret["changes"] = {"drained": {"old": True, "new": False}}
        if __opts__["test"]:
            ret["result"] = None
            ret["comment"] = "The server would be put back (maintenance file removed)"
            return ret
        out = __salt__["clustercheck.undrain"](maintenance_file=maintenance_file)
        ret["comment"] = f"The server is back in rotation ({out['maintenance_file']} removed)"
    except CommandExecutionError as exc:
        ret["changes"] = {}
        ret["result"] = False
        ret["comment"] = str(exc)
    return ret


def option_file(name, user, group, mode="0600"):
    """
    The probe's option file (it holds the MySQL password), rendered from the
    pillar when the state runs, so that the SLS never carries the password:
    ``state.show_sls`` shows the path, owner and mode only.  Written by
    ``file.managed`` with ``show_changes: False``: the return and the diff
    never hold the content.

    name
        The file's path: one of the secret files ``clustercheck.plan`` lists.
    """
    ret = lb_state.ret(name)
    try:
        files = __salt__["clustercheck.plan"](secrets=True)["files"]
    except CommandExecutionError as exc:
        ret["result"] = False
        ret["comment"] = str(exc)
        return ret
    spec = files.get(name)
    if spec is None or not spec["secret"]:
        ret["result"] = False
        ret["comment"] = (
            f"{name} is not the probe's option file (clustercheck.plan lists: {', '.join(p for p, f in files.items() if f['secret'])})"
        )
        return ret
    out = __states__["file.managed"](
        name=name,
        contents=spec["content"],
        user=user,
        group=group,
        mode=mode,
        makedirs=True,
        dir_mode="0755",
        show_changes=False,
    )
    # file.managed names no content with show_changes off; keep only what
    # says what changed (a new file, the mode, the owner), never a diff
    changes = dict(out.get("changes") or {})
    if "diff" in changes:
        changes["diff"] = "<show_changes=False>"
    ret.update(result=out["result"], comment=out["comment"], changes=changes)
    return ret


def account_present(name, password=None, host="localhost", max_connections=None, socket=None, defaults_file=None, client=None):
    """
    The probe's MySQL account exists with this password, USAGE only, and a
    connection limit.  The password never appears in the changes or the
    comment; the SQL reaches the client on its stdin.

    name
        The MySQL user name.

    password
        Default: the pillar's (``galera_probe:password``), read when the
        state runs; salt/clustercheck leaves it out so the SLS never holds it.

    host
        Its host part: ``localhost`` for a probe on the unix socket.

    socket, defaults_file
        How to reach the server as its administrator (root through the socket
        by default).
    """
    ret = lb_state.ret(name)
    args = {
        "name": name,
        "password": password,
        "host": host,
        "max_connections": max_connections,
        "socket": socket,
        "defaults_file": defaults_file,
        "client": client,
    }
    try:
        needed = __salt__["clustercheck.account_changes"](**args)
        if not needed:
            ret["comment"] = f"The account {name}@{host} is as it should be"
            return ret
        ret["changes"] = {"account": [c["change"] for c in needed]}
        if __opts__["test"]:
            ret["result"] = None
            ret["comment"] = f"The account {name}@{host} would be changed"
            return ret
        __salt__["clustercheck.ensure_account"](**args)
        ret["comment"] = f"The account {name}@{host} is set"
    except CommandExecutionError as exc:
        ret["changes"] = {}
        ret["result"] = False
        ret["comment"] = str(exc)
    return ret
