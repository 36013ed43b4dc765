"""Salt's own utils loader executes every module of `_utils/` (a minion
does at each start and after saltutil.sync_all).  It runs them without
registering them in sys.modules first, so a `@dataclass` whose annotations
are strings (`from __future__ import annotations`) raised AttributeError
there, and every minion's log had a "Failed to import utils ..." traceback
per such module: an operator could not tell it from a real failure."""

import logging
import os

import salt.config
import salt.loader

from tests.support import REPO, private_minion

NAMES = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "_utils")) if f.endswith(".py"))


def test_salts_utils_loader_imports_every_pure_module(tmp_path, caplog):
    opts = salt.config.minion_config(private_minion(tmp_path))
    with caplog.at_level(logging.ERROR, logger="salt.loader"):
        utils = salt.loader.utils(opts)
        utils._load_all()  # pylint: disable=protected-access - what a minion's start does, at once
    errors = [r.getMessage() for r in caplog.records if "Failed to import" in r.getMessage()]
    assert errors == [], errors
    assert {n: why for n, why in utils.missing_modules.items() if n in NAMES} == {}
    # the product's modules are among those it loaded (the check sees them)
    assert any(key.startswith("lb_topology.") for key in utils)
