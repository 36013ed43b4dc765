#!/bin/sh
# Make Debian's Mininet (python3-mininet files from the `mininet` package)
# importable from the project's venv.  Idempotent: re-running it replaces the
# link with the same one.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
src=/usr/lib/python3/dist-packages/mininet
[ -d "$src" ] || { echo "link-mininet: $src missing (apt-get install mininet)" >&2; exit 1; }
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sfn "$src" "$site/mininet"
"$venv/bin/python" -c 'import mininet.net' && echo "link-mininet: $site/mininet -> $src"
