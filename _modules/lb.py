"""
Check the load-balancer topology and preview what each node gets.

A thin layer over `_utils/lb_topology.py` (validation, the model) and
`_utils/lb_render.py` (per-node rendering).  Both functions read the pillar's
``lb`` key, or a YAML file given as ``topology=PATH`` so that a pillar
repository's CI can check a change before it is merged.
"""

import copy
import logging

from salt.exceptions import CommandExecutionError

import carp_common
import lb_fresh
import lb_host
import lb_parameters
import lb_render
import lb_roster
import lb_topology
import lb_version

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

log = logging.getLogger(__name__)

__virtualname__ = "lb"


def __virtual__():
    return __virtualname__


def _raw(topology=None):
    if topology:
        try:
            return lb_topology.load_file(topology)
        except OSError as exc:
            raise CommandExecutionError(f"cannot read topology {topology}: {exc}") from exc
    raw = __pillar__.get(lb_topology.ROOT)
    if raw is None:
        raise CommandExecutionError(
            "the pillar has no 'lb' key for this minion; give topology=PATH or assign a topology in the pillar top file"
        )
    return raw


def parameters(section, os_family=None):
    """
    One section of the product's per-OS parameters (``_utils/lb_parameters.py``:
    the defaults with what differs for the OS family on top), for this
    minion's ``os_family`` grain or the one given.  Sections: ``node``,
    ``carp``, ``routing``, ``probe``, ``haproxy_sls`` (the haproxy SLS's).  A
    minion's ``lb_settings`` override them (``carp``, ``routing``,
    ``haproxy_sls``; ``clustercheck`` for ``probe``; ``haproxy`` for
    HAProxy's paths), in the module that reads them, not here.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' lb.parameters haproxy
        salt-call lb.parameters carp os_family=FreeBSD
    """
    try:
        return lb_parameters.of(os_family or __grains__.get("os_family"), section)
    except KeyError as exc:
        raise CommandExecutionError(str(exc.args[0])) from exc


def version():
    """
    The release of the product this minion runs (its synced modules): the
    ``VERSION`` of ``_utils/lb_version.py``, tagged ``v<VERSION>`` in the
    product's repository (CHANGELOG.md says what each release changed).

    CLI Example:

    .. code-block:: bash

        salt 'lb*' lb.version
    """
    return lb_version.VERSION


def validate(topology=None):
    """
    Validate the topology: every error and warning with its pillar path.

    Returns ``{"valid": bool, "errors": [{"path", "message"}], "warnings": [...]}``.

    topology
        Path of a YAML file holding what the pillar's ``lb`` key holds (a
        whole pillar SLS with a top-level ``lb`` key also works).  Default:
        this minion's pillar.

    CLI Example:

    .. code-block:: bash

        salt-call lb.validate --out=json
        salt-call lb.validate topology=pillar/lab/lb.sls --out=json
    """
    try:
        raw = _raw(topology)
    except lb_topology.TopologyError as exc:
        return lb_topology.Report(exc.errors, exc.warnings).as_dict()
    return lb_topology.check(raw).as_dict()


def model(topology=None):
    """
    The validated topology model: the one place every module of the
    product gets the topology from (``__salt__["lb.model"]()``), so the
    pillar is validated once per change, not once per module.  For people,
    ``lb.validate`` and ``lb.preview`` say the same in plain data; this
    holds Python objects (``ipaddress``) for the modules.

    Cached in ``__context__`` against the pillar's ``lb`` value it was made
    from, so a pillar refresh is seen at the next call; each caller gets its
    own copy.  An invalid topology raises ``CommandExecutionError`` with
    every error and its pillar path.

    topology
        Path of a YAML topology file instead of the pillar (not cached).

    CLI Example:

    .. code-block:: bash

        salt-call lb.model --out=txt
    """
    raw = _raw(topology)
    key = "lb.model"
    cached = None if topology else __context__.get(key)
    if cached is not None and cached[0] == raw:
        return copy.deepcopy(cached[1])
    try:
        report = lb_topology.check(raw)
    except lb_topology.TopologyError as exc:
        report = lb_topology.Report(exc.errors, exc.warnings)
    if report.errors:
        raise CommandExecutionError("the topology is invalid; run lb.validate for the list:\n" + "\n".join(f"  {e}" for e in report.errors))
    if not topology:
        __context__[key] = (copy.deepcopy(raw), report.model)
        return copy.deepcopy(report.model)
    return report.model


def node(node=None, topology=None):  # pylint: disable=redefined-outer-name
    """
    ``{"model": lb.model, "pair": the node's pair, "node": the node}`` (the
    pair and node are the model's own): what the modules that configure one
    node start from, validated once.  A node in no pair
    raises ``CommandExecutionError`` naming the known nodes.

    node
        The node id.  Default: this minion's id.

    CLI Example:

    .. code-block:: bash

        salt-call lb.node --out=txt
    """
    whole = model(topology)
    try:
        pair, this = lb_topology.find_node(whole, node or __opts__["id"])
    except KeyError as exc:
        raise CommandExecutionError(str(exc.args[0])) from exc
    return {"model": whole, "pair": pair, "node": this}


def preview(node=None, os_family=None, topology=None, secrets=False):
    """
    Every file a node would get, rendered from the topology, and nothing
    else: the states write exactly these (tests/functional/test_preview_contract.py).
    ``{path: {"content", "mode", "user", "group", "block", "state", "link"}}``
    (``link``: the file is a symbolic link to that path, a unit's enablement):
    ``block`` is ``append`` when the content is the node's marked block in
    a file the system owns (FreeBSD's rc.conf), ``state`` the SLS that
    writes the file.

    Nothing is written.  Secrets (CARP passwords, the probe's password, BGP
    keys, the stats users' password hashes, TLS keys) show as ``<redacted>``
    unless ``secrets=True``.

    node
        The node id (its minion id) in the topology.  Default: this minion's id.

    os_family
        ``FreeBSD`` or ``Debian``.  Default: this minion's ``os_family`` grain.

    topology
        Path of a YAML topology file instead of the pillar.

    CLI Example:

    .. code-block:: bash

        salt-call lb.preview node=lb-a os_family=FreeBSD --out=json
        salt-call lb.preview node=lb-b os_family=Debian topology=pillar/lab/lb.sls
    """
    node = node or __opts__["id"]
    os_family = os_family or __grains__.get("os_family")
    try:
        return lb_render.manifest(model(topology), node, os_family, redact=not secrets, carp=_carp_render())
    except (KeyError, ValueError) as exc:
        raise CommandExecutionError(str(exc.args[0] if exc.args else exc)) from exc


def _carp_render():
    """The minion's `lb_settings:carp` as rendering takes it: the carp SLS's paths on
    Debian (the lab's /run/lb-carp), and the provider it chose, if any
    (which files and which units at boot: what loads the `carp` module)."""
    override = carp_common.override(__opts__, __grains__, __pillar__)
    carp = carp_common.settings("Linux", override)
    if override.get("provider"):
        carp["provider"] = override["provider"]
    return carp


def host(node=None, os_family=None, topology=None):
    """
    What the ``host`` SLS applies to a load balancer: its files (sysctls,
    static routes; FreeBSD's rc.conf lines), the sysctl values and the
    static routes: ``{"os_family", "files", "sysctl_file", "sysctl",
    "routes"}`` (``_utils/lb_host.py``).  None of it is secret.

    CLI Example:

    .. code-block:: bash

        salt-call lb.host node=lb-a os_family=Debian --out=json
    """
    node = node or __opts__["id"]
    os_family = os_family or __grains__.get("os_family")
    try:
        return lb_host.plan(model(topology), node, os_family, carp=_carp_render())
    except (KeyError, ValueError) as exc:
        raise CommandExecutionError(str(exc.args[0] if exc.args else exc)) from exc


def roles(topology=None):
    """
    What this minion is in the topology, from its id and its IPv4 addresses:
    ``{"lb": [pairs it is a node of], "galera": [pairs it is a database server of],
    "routing": [pairs it is a node of that have OSPF or BGP]}``.

    The state top file (``salt/top.sls``) assigns states from this.  An
    invalid topology gives no role and ``"invalid"``: its first error with
    the pillar path, which the top file turns into a failed highstate
    (``lb.validate`` lists every error).  No ``lb`` key in the pillar: no
    role, ``"invalid": None``.

    CLI Example:

    .. code-block:: bash

        salt-call lb.roles
        salt 'db-*' lb.roles
    """
    if topology:
        try:
            raw = lb_topology.load_file(topology)
        except (OSError, lb_topology.TopologyError) as exc:
            raise CommandExecutionError(f"cannot read topology {topology}: {exc}") from exc
    else:
        raw = __pillar__.get(lb_topology.ROOT)
    out = lb_topology.minion_roles(raw, __opts__["id"], __grains__.get("ipv4", []))
    if out["invalid"]:
        log.error("lb.roles: the topology is invalid: %s; run lb.validate", out["invalid"])
    return out


def roster(topology=None, pairs=None, interface=None, **options):
    """
    A salt-ssh roster of the pairs' nodes: ``{node id: {"host": address, ...}}``,
    each node addressed on its management interface (the pair's stats
    interface, ``mgmt`` by default), so ``salt-ssh 'lb*' state.apply`` reaches
    the hosts the topology names (docs/agentless.md).

    pairs
        A pair name or a list of them.  Default: every pair.
    interface
        The node interface to address instead of the management one.
    options
        Roster options for every entry: user, port, priv, sudo, thin_dir,
        set_path, ... (``_utils/lb_roster.py`` lists them).

    CLI Example:

    .. code-block:: bash

        salt-call lb.roster user=root priv=/etc/salt/pki/master/ssh/salt-ssh.rsa --out=yaml > /etc/salt/roster
        salt-call lb.roster topology=pillar/lab/lb.sls --out=yaml
    """
    options = {k: v for k, v in options.items() if not k.startswith("__")}
    try:
        return lb_roster.roster(model(topology), pairs=pairs, interface=interface, **options)
    except lb_topology.TopologyError as exc:
        raise CommandExecutionError(str(exc)) from exc
    except ValueError as exc:
        raise CommandExecutionError(str(exc)) from exc
