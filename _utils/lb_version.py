"""The product's version: the one place it is written.

A release is a commit on main that sets VERSION, adds its section to
CHANGELOG.md, and is tagged ``v<VERSION>`` (docs/install.md: gitfs pins the
tag).  pyproject.toml reads VERSION from here; ``salt 'lb*' lb.version``
says which release each minion runs after ``saltutil.sync_all``.
"""

VERSION = "0.1.0"
TAG = f"v{VERSION}"
